"""Slab cohorts: PNG reading, grouping of the images, storage, and the workflow on slabs."""

from __future__ import annotations

from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from conftest import REPO, job_counts, snakemake
from PIL import Image
from scipy import ndimage

from datspect.cohorts import slab_folder as slabs
from datspect.errors import InputError
from datspect.features import sbr
from datspect.io.tsv import read_tsv
from datspect.space import slab_grid
from datspect.workflow import steps

REAL = REPO.parent / "shared" / "data" / "ppmi-slabs"


def synthetic_slab(subject_rng: np.random.Generator, noise_rng, label: int) -> np.ndarray:
    """An 8-bit slab like the published ones: brain, striata (reduced putamen if label 1)."""
    masks = sbr.slab_masks(5)
    img = np.where(ndimage.binary_dilation(masks["reference"], iterations=3), 20.0, 2.0)
    for side in ("l", "r"):
        caudate, putamen = subject_rng.uniform(2.5, 4.0, size=2)
        if label:
            putamen *= subject_rng.uniform(0.2, 0.6)
        img[masks[f"caudate_{side}"]] += 20 * caudate
        img[masks[f"putamen_{side}"]] += 20 * putamen
    img = np.roll(img, tuple(subject_rng.integers(-2, 3, size=2)), axis=(0, 1))
    img = ndimage.gaussian_filter(img, 2.5) * subject_rng.uniform(0.8, 1.2)
    img += noise_rng.normal(0, 1.5, img.shape)
    return np.clip(np.round(img), 0, 255).astype(np.uint8)


def write_slab_folder(root: Path, n_subjects: int = 12, seed: int = 0) -> Path:
    """HC/ and PD/ PNGs: two images per subject, and one image filed under both labels."""
    rng = np.random.default_rng(seed)
    for label, cls in ((0, "HC"), (1, "PD")):
        (root / cls).mkdir(parents=True, exist_ok=True)
        for s in range(n_subjects):
            for visit in range(2):  # same subject draws, new noise
                pixels = synthetic_slab(np.random.default_rng([seed, label, s]), rng, label)
                Image.fromarray(pixels).save(root / cls / f"case{2 * s + visit}.png")
    conflict = Image.open(root / "HC" / "case0.png")
    conflict.save(root / "PD" / f"case{2 * n_subjects}.png")
    return root


@pytest.fixture(scope="module")
def slab_folder(tmp_path_factory) -> Path:
    return write_slab_folder(tmp_path_factory.mktemp("slab folder"))


def test_read_slab_png_checks_size_and_format(tmp_path):
    Image.fromarray(np.full((91, 109), 10, np.uint8)).save(tmp_path / "turned.png")
    with pytest.raises(InputError, match=r"turned\.png.*91 rows x 109 columns.*109 x 91"):
        slabs.read_slab_png(tmp_path / "turned.png")
    (tmp_path / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n not really")
    with pytest.raises(InputError, match=r"broken\.png: not a readable PNG"):
        slabs.read_slab_png(tmp_path / "broken.png")
    Image.fromarray(np.zeros((109, 91, 3), np.uint8)).save(tmp_path / "rgb.png")
    with pytest.raises(InputError, match=r"rgb\.png: PNG mode 'RGB'.*greyscale"):
        slabs.read_slab_png(tmp_path / "rgb.png")


def test_list_slab_folder_maps_class_folders(slab_folder, tmp_path):
    table = slabs.list_slab_folder(slab_folder, "toy")
    assert len(table) == 49
    assert set(table.loc[table["class"] == "PD", "label"]) == {1}
    assert "HC-case0" in set(table["subject_id"])
    with pytest.raises(InputError, match="does not exist"):
        slabs.list_slab_folder(tmp_path / "nowhere", "toy")
    (tmp_path / "HC").mkdir()
    with pytest.raises(InputError, match="both labels"):
        slabs.list_slab_folder(tmp_path, "toy")


def test_group_slabs_quarantines_conflicts_and_pairs_siblings(slab_folder):
    table = slabs.list_slab_folder(slab_folder, "toy")
    assert slabs.label_conflicts(table) == {"HC-case0", "PD-case24"}
    groups, info = slabs.group_slabs(table)
    quarantined = groups[groups["group"] == ""]
    assert set(quarantined["subject_id"]) == {"HC-case0", "PD-case24"}
    assert info["quarantined"] == 2
    # Siblings (case 2s and 2s+1 of one class) share a group wherever a pair was found.
    paired = groups[groups["reason"] == "similar"].copy()
    assert len(paired) >= 30, info
    number = paired["subject_id"].str.extract(r"-case(\d+)$")[0].astype(int)
    sibling = paired["subject_id"].str.split("-").str[0] + number.floordiv(2).astype(str)
    assert (paired.groupby("group").apply(lambda g: sibling[g.index].nunique()) == 1).all()
    assert info["similarity_pairs_label_agreement"] == 1.0


def test_prepared_slab_round_trips_on_the_mni_grid(slab_folder, tmp_path):
    png = slab_folder / "PD" / "case3.png"
    steps.prepare_slab(
        source=png,
        original=tmp_path / "o.nii.gz",
        smoothed=tmp_path / "s.nii.gz",
        fwhm_mm=18.0,
        n_slices=5,
        cohort="toy",
        subject="PD-case3",
    )
    stored = nib.load(tmp_path / "o.nii.gz")
    assert stored.shape == (91, 109, 1)
    centre = stored.affine @ [45, 63, 0, 1]
    z_mni = (slab_grid.putamen_slices(5).mean() * 2) - 72  # MNI z of the putamen slices' centre
    assert centre[2] == pytest.approx(z_mni)
    np.testing.assert_array_equal(
        slab_grid.as_slab(np.asarray(stored.dataobj)), slabs.read_slab_png(png)
    )
    smoothed = slab_grid.as_slab(np.asarray(nib.load(tmp_path / "s.nii.gz").dataobj))
    assert smoothed.max() < slabs.read_slab_png(png).max()


@pytest.mark.workflow
def test_slab_cohort_through_the_workflow(slab_run):
    workdir = slab_run  # conftest.py: the folder of write_slab_folder, 2 splits
    groups = read_tsv(workdir / "results/qc/slab_groups.tsv")
    assert set(groups.columns) >= {"image", "group", "label", "reason"}
    sheet = read_tsv(workdir / "data/toy/cohort.tsv")
    assert len(sheet) == 47 and "HC-case0" not in set(sheet["subject_id"])
    splits = read_tsv(workdir / "results/splits/splits.tsv").merge(sheet, on="subject_id")
    assert (splits.groupby(["split", "group"])["part"].nunique() == 1).all()
    sbr_rows = read_tsv(workdir / "results/sbr/sbr.tsv")
    assert {"putamen", "hv_putamen"} <= set(sbr_rows.columns)
    assert sbr_rows.groupby("label")["putamen"].median().diff().iloc[-1] < 0  # PD lower
    per_split = read_tsv(workdir / "results/metrics/per_split.tsv")
    assert set(per_split["method"]) == {"sbr_aal", "sbr_hv", "cnn"}
    leak = read_tsv(workdir / "results/qc/leakage.tsv")
    assert set(leak["scheme"]) == {"grouped", "ungrouped"}


def test_a_cluster_job_reads_only_the_images_it_needs(tmp_path):
    """A cluster job re-parses the Snakefile (``--mode remote``): a per-image job resolves its
    input without hashing every PNG, a job over the cohort gets the main process's subjects."""
    folder = write_slab_folder(tmp_path / "slabs")
    config = tmp_path / "slabs.yaml"
    config.write_text(
        f"cohorts:\n  toy:\n    role: development\n    source: slabs\n"
        f'    slabs: {{folder: "{folder}"}}\nsplits: {{n_splits: 2}}\n'
    )

    def plan(*args, check=True):
        return snakemake("--dry-run", *args, workdir=tmp_path / "run", configfiles=[config],
                         check=check)  # fmt: skip

    bundle = plan("--mode", "remote", "--target-jobs", "cnn_input_bundle:cohort=toy")
    assert job_counts(bundle.stdout)["cnn_input"] == 47  # 49 images, 2 quarantined
    (folder / "PD" / "case5.png").write_bytes(b"\x89PNG\r\n\x1a\n not really")
    main = plan(check=False)  # the main process still reads every PNG before any job
    assert main.returncode != 0 and "case5.png: not a readable PNG" in main.stdout + main.stderr
    one = plan("--mode", "remote", "--target-jobs", "prepare_slab:cohort=toy,subject=HC-case1",
               "--allowed-rules", "prepare_slab", "--force")  # fmt: skip
    assert job_counts(one.stdout) == {"prepare_slab": 1, "total": 1}


@pytest.mark.skipif(not REAL.is_dir(), reason=f"real PPMI slabs not present at {REAL}")
def test_real_slabs_grouping():
    table = slabs.list_slab_folder(REAL, "ppmi_slabs")
    assert len(table) == 1097
    groups, info = slabs.group_slabs(table)
    quarantined = set(groups.loc[groups["group"] == "", "subject_id"])
    assert quarantined == {"HC-case0", "PD-case352"}
    assert 100 <= info["similarity_pairs"] <= 200
    assert info["similarity_pairs_label_agreement"] > 0.95
