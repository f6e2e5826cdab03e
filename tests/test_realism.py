"""The realism report: its measures on synthetic sets with known answers, its figure, its rule."""

from __future__ import annotations

import shutil

import numpy as np
import pytest
from conftest import REPO, job_counts, snakemake
from scipy import ndimage
from test_slabs import write_slab_folder

from datspect.evaluation import realism
from datspect.features import sbr
from datspect.figures.realism import realism_figure
from datspect.io.tsv import read_tsv
from datspect.schema import defaults

SBR = defaults("sbr")


def smooth_slabs(n: int, seed: int, label: int) -> np.ndarray:
    """Noise-free reference-scaled slabs: brain, striata (reduced putamen if label 1)."""
    rng = np.random.default_rng(seed)
    masks = sbr.slab_masks(5)
    out = []
    for _ in range(n):
        img = np.where(ndimage.binary_dilation(masks["reference"], iterations=3), 1.0, 0.1)
        for side in ("l", "r"):
            caudate, putamen = rng.uniform(2.5, 4.0, size=2)
            putamen *= rng.uniform(0.2, 0.6) if label else 1.0
            img[masks[f"caudate_{side}"]] += caudate
            img[masks[f"putamen_{side}"]] += putamen
        img = ndimage.gaussian_filter(img, 2.5)
        out.append(realism.scaled_slab(img, n_slices=5, reference=SBR["reference"]))
    return np.stack(out)


def two_classes(n: int, seed: int):
    slabs = np.concatenate([smooth_slabs(n, seed, 0), smooth_slabs(n, seed + 1, 1)])
    return slabs, np.r_[np.zeros(n, int), np.ones(n, int)]


def table(sim, sim_labels, real, real_labels):
    out = realism.realism_table(sim, sim_labels, real, real_labels, sbr=SBR, n_slices=5, seed=1)
    return out.set_index(["measure", "label"])


def test_identical_sets_agree():
    slabs, labels = two_classes(12, 0)
    out = table(slabs, labels, slabs, labels)
    for label in (0, 1):
        row = out.xs(label, level="label")
        assert row.loc["class_mean_correlation", "value"] == pytest.approx(1.0)
        for measure in (
            "striatal_peak",
            "caudate_putamen_ratio",
            "highpass_sd",
            "sbr_aal_median",
            "nps_mean_frequency",
            "sibling_share",
        ):
            assert row.loc[measure, "ratio"] == pytest.approx(1.0)
            assert row.loc[measure, "value"] == pytest.approx(0.0, abs=1e-12)
        for measure in ("sbr_aal_wasserstein", "sbr_hv_wasserstein", "sbr_aal_ks"):
            assert row.loc[measure, "value"] == pytest.approx(0.0, abs=1e-12)
    assert list(out.reset_index().columns) == realism.COLUMNS


def test_discriminator_chance_on_one_distribution_and_one_on_separable_sets():
    a, b = smooth_slabs(40, 1, 0), smooth_slabs(40, 2, 0)
    noise = np.random.default_rng(3)
    a, b = (x + noise.normal(0, 0.05, x.shape) for x in (a, b))
    assert abs(realism.discriminator_accuracy(a, b, seed=0) - 0.5) < 0.2
    assert realism.discriminator_accuracy(a, b * 1.5, seed=0) > 0.95
    assert np.isnan(realism.discriminator_accuracy(a[:1], b, seed=0))


def test_brighter_set_has_the_peak_ratio():
    slabs, labels = two_classes(8, 4)
    out = table(slabs * 1.25, labels, slabs, labels)
    assert out.loc[("striatal_peak", 0), "ratio"] == pytest.approx(1.25)
    assert out.loc[("striatal_peak", 1), "ratio"] == pytest.approx(1.25)
    assert out.loc[("caudate_putamen_ratio", 1), "ratio"] == pytest.approx(1.0)


def test_highpass_sd_detects_white_noise():
    clean = smooth_slabs(6, 5, 0)
    noisy = clean + np.random.default_rng(6).normal(0, 0.1, clean.shape)
    # white noise of SD s leaves s * sqrt(1 - 2 G(0) + sum G^2) = 0.970 s after the blur, added
    # in variance to the structure's own residual
    added = np.sqrt(realism.highpass_sd(noisy) ** 2 - realism.highpass_sd(clean) ** 2)
    assert np.median(added) == pytest.approx(0.097, rel=0.1)


def test_noise_power_spectrum_tells_fine_from_coarse_grain():
    clean = smooth_slabs(6, 9, 0)
    rng = np.random.default_rng(10)
    white = rng.normal(0, 0.1, clean.shape)
    grainy = ndimage.gaussian_filter(white, (0, 1.5, 1.5)) * 4
    freq, power = realism.noise_power_spectrum(clean + white)
    assert freq.shape == power.shape == (realism.NPS_BINS,)
    assert freq.max() < 0.25  # below Nyquist of 2 mm pixels
    # white noise fills the spectrum evenly; correlated noise shifts power to low frequencies
    assert realism.nps_mean_frequency(clean + white) > realism.nps_mean_frequency(clean + grainy)


def test_sibling_share_finds_near_copies_only():
    slabs, labels = two_classes(20, 11)
    rng = np.random.default_rng(12)
    noisy = slabs + rng.normal(0, 0.02, slabs.shape)
    alone = realism.sibling_share(noisy, labels)
    twins = np.concatenate([noisy, noisy + rng.normal(0, 0.005, slabs.shape)])
    doubled = realism.sibling_share(twins, np.r_[labels, labels])
    for label in (0, 1):  # the toy slabs have 4 degrees of freedom: some lookalikes pair
        assert doubled[label] > 0.9 and doubled[label] > alone[label] + 0.2
    assert realism.sibling_share(noisy[labels == 0], labels[labels == 0]) == {}


def test_cnn_discriminator_chance_on_one_distribution_and_high_on_separable_sets():
    from datspect.cnn.discriminator import cnn_discriminator_accuracy, cnn_discriminator_rows

    a, b = smooth_slabs(30, 13, 0), smooth_slabs(30, 14, 0)
    noise = np.random.default_rng(15)
    a, b = (x + noise.normal(0, 0.05, x.shape) for x in (a, b))
    assert abs(cnn_discriminator_accuracy(a, b, seed=0) - 0.5) < 0.25
    assert cnn_discriminator_accuracy(a, b * 1.5, seed=0) > 0.9
    assert cnn_discriminator_accuracy(a, b, seed=3) == cnn_discriminator_accuracy(a, b, seed=3)
    rows = cnn_discriminator_rows(a, np.zeros(30), b, np.zeros(30), seed=0)
    assert [r[:2] for r in rows] == [["cnn_discriminator_balanced_accuracy", 0]]


def test_anterior_posterior_ratio_sees_a_gradient():
    flat = smooth_slabs(1, 7, 0)[0]
    rows = np.arange(flat.shape[0])[:, None]
    tilted = flat * (1 + 0.01 * (rows - 60))  # brighter anterior (higher rows)
    assert (
        realism.region_ratios(flat)["anterior_posterior_putamen_ratio"]
        < (realism.region_ratios(tilted)["anterior_posterior_putamen_ratio"])
    )


def test_real_slabs_quarantine_and_scale(tmp_path):
    folder = write_slab_folder(tmp_path / "slabs", n_subjects=3)
    slabs, labels, n_quarantined = realism.real_slabs(
        folder, n_slices=5, reference=SBR["reference"]
    )
    assert n_quarantined == 2 and len(slabs) == 11 and sorted(set(labels)) == [0, 1]
    masks = sbr.slab_masks(5)
    assert slabs[:, masks["reference"]].mean(axis=1) == pytest.approx(np.ones(len(slabs)))


def test_figure(tmp_path):
    slabs, labels = two_classes(6, 8)
    fig = realism_figure(
        slabs * 1.2, labels, slabs, labels, tmp_path / "realism.png", sbr=SBR, n_slices=5
    )
    assert (tmp_path / "realism.png").stat().st_size > 0
    assert len(fig.axes) >= 8


@pytest.mark.workflow
def test_realism_rule(small_run, tmp_path):
    """The rule on the finished small run, planned alone (nothing else reruns), then run there;
    its outputs are removed again so the shared run stays as other tests expect it."""
    folder = write_slab_folder(tmp_path / "slabs", n_subjects=4)
    extra = tmp_path / "realism.yaml"
    extra.write_text(f"realism:\n  reference_slabs: '{folder}'\n")
    configs = [REPO / "config.yaml", REPO / "tests" / "config.small.yaml", extra]
    targets = ["results/qc/realism.tsv", "results/figures/realism.png"]
    dry = snakemake("-n", *targets, workdir=small_run, configfiles=configs).stdout
    assert job_counts(dry) == {"realism": 1, "total": 1}, dry
    try:
        snakemake("--cores", "2", *targets, workdir=small_run, configfiles=configs)
        out = read_tsv(small_run / targets[0])
        assert set(out["label"]) == {0, 1}
        assert list(out.columns) == realism.COLUMNS
        assert "cnn_discriminator_balanced_accuracy" in set(out["measure"])
        assert (small_run / targets[1]).stat().st_size > 0
        log = (small_run / "logs/realism/realism.log").read_text()
        assert "2 under both labels left out" in log
    finally:
        for target in targets:
            (small_run / target).unlink(missing_ok=True)
        shutil.rmtree(small_run / "logs" / "realism", ignore_errors=True)


def test_absent_reference_folder_plans_nothing_and_says_so(tmp_path):
    extra = tmp_path / "realism.yaml"
    extra.write_text("realism:\n  reference_slabs: no-such-folder\n")
    configs = [REPO / "config.yaml", REPO / "tests" / "config.small.yaml", extra]
    proc = snakemake("-n", workdir=tmp_path / "run", configfiles=configs)
    output = proc.stdout + proc.stderr
    lines = [line for line in output.splitlines() if "realism report skipped" in line]
    assert len(lines) == 1 and str(tmp_path / "no-such-folder") in lines[0]
    assert "realism" not in job_counts(proc.stdout)
