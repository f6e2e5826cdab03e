"""How far simulated slabs are from real ones: the instrument of ``results/qc/realism.tsv``.

Both sets are compared as 2D slabs on the MNI 2 mm grid (rows y, posterior to anterior; columns
x), each scaled as the CNN's slab input is (:func:`scaled_slab`, i.e.
:func:`datspect.features.slab.scale_slab`: over its in-slab reference mean): simulated slabs are
the mean of the putamen slices of the normalized development-cohort images
(:func:`simulated_slabs`), real ones the PNGs of a slab folder with the images stored under both
labels left out (:func:`real_slabs`).

:func:`realism_table` returns one row per (measure, label), label 0 (normal) or 1 (reduced):

``measure``
    what is measured (below);
``label``
    the class compared (0 normal, 1 reduced);
``simulated``, ``real``
    the measure on each set, for measures of one set; empty for measures comparing the sets;
``ratio``
    simulated / real (measures of one set); empty otherwise;
``value``
    simulated - real for measures of one set; the measure itself for measures comparing the sets.

Measures of one set: ``n_images``; ``striatal_peak`` (99.5th percentile of the class-mean slab in
the striatal window :data:`~datspect.cohorts.slab_folder.STRIATAL_WINDOW`);
``caudate_putamen_ratio`` and ``anterior_posterior_putamen_ratio`` (means of the class-mean slab in
the projected AAL regions; the putamen split at its median row); ``sbr_aal_median`` and
``sbr_hv_median`` (slab SBR, the config's ``sbr`` section); ``highpass_sd`` (median over images of
the SD, in the striatal window, of the slab minus its Gaussian blur of sigma 2 pixels: fine-scale
noise); ``nps_mean_frequency`` (power-weighted mean frequency, cycles/mm, of the radial noise
power spectrum of that residual: the noise's grain); ``sibling_share`` (share of images that the
grouping of slab cohorts pairs as two images of one subject: every simulated subject has one
image per setting, so simulated pairs are false; real pairs are partly true). Measures comparing
the sets: ``class_mean_correlation`` (Pearson, striatal window);
``sbr_aal_wasserstein``, ``sbr_aal_ks``, ``sbr_hv_wasserstein``, ``sbr_hv_ks`` (scipy.stats, on the
per-image SBRs); ``discriminator_balanced_accuracy`` (an L2 logistic regression on 2x2-pooled,
standardized pixels telling simulated from real within the class, stratified 5-fold cross-validated,
seeded, class-weighted: 0.5 = indistinguishable, 1 = always told apart). The workflow adds
``cnn_discriminator_balanced_accuracy``, the same with a small CNN
(:mod:`datspect.cnn.discriminator`).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

import numpy as np
import pandas as pd
from scipy import ndimage, stats

from datspect.cohorts import slab_folder
from datspect.features import sbr as sbr_measures
from datspect.features.sbr_config import sbr_arguments
from datspect.features.slab import make_slab, scale_slab
from datspect.vocabulary import SBR_COLUMN

#: Columns of :func:`realism_table`.
COLUMNS = ["measure", "label", "simulated", "real", "ratio", "value"]
#: Sigma (pixels) of the Gaussian whose residual is the fine-scale noise.
HIGHPASS_SIGMA = 2.0
PEAK_PERCENTILE = 99.5
PIXEL_MM = 2.0
#: Rings of the radial noise power spectrum between 0 and Nyquist.
NPS_BINS = 12
LABELS = (0, 1)


def scaled_slab(slab2d, *, n_slices: int, reference: str, name: str = "slab") -> np.ndarray:
    """A (109, 91) slab as the CNN sees it (:func:`~datspect.features.slab.scale_slab`: over its
    in-slab reference mean), in float64."""
    return scale_slab(slab2d, n_slices=n_slices, reference=reference, name=name).astype(np.float64)


def simulated_slabs(paths: Iterable, *, n_slices: int, reference: str) -> np.ndarray:
    """Scaled slabs (n, 109, 91) of normalized MNI volumes (NIfTI paths): their CNN inputs."""
    import nibabel as nib

    out = []
    for path in paths:
        volume = np.asarray(nib.load(str(path)).get_fdata(), dtype=np.float64)
        slab = make_slab(volume, n_slices, reference, name=str(path))  # = scaled_slab(projected)
        out.append(slab.astype(np.float64))
    return np.stack(out)


def real_slabs(folder, *, n_slices: int, reference: str) -> tuple[np.ndarray, np.ndarray, int]:
    """Scaled slabs and labels of a slab folder, images under both labels left out.

    Returns ``(slabs, labels, n_quarantined)``.
    """
    table = slab_folder.list_slab_folder(folder, "realism reference")
    conflicts = slab_folder.label_conflicts(table)
    kept = table[~table["subject_id"].isin(conflicts)]
    slabs = np.stack(
        [
            scaled_slab(
                slab_folder.read_slab_png(p), n_slices=n_slices, reference=reference, name=p
            )
            for p in kept["image"]
        ]
    )
    return slabs, kept["label"].to_numpy(dtype=int), len(table) - len(kept)


def _window(slabs: np.ndarray) -> np.ndarray:
    rows, cols = slab_folder.STRIATAL_WINDOW
    return slabs[..., rows, cols]


def striatal_peak(mean_slab: np.ndarray) -> float:
    """99.5th percentile of a (class-mean) slab in the striatal window."""
    return float(np.percentile(_window(mean_slab), PEAK_PERCENTILE))


def window_correlation(a: np.ndarray, b: np.ndarray) -> float:
    """Pearson correlation of two slabs in the striatal window."""
    return float(np.corrcoef(_window(a).ravel(), _window(b).ravel())[0, 1])


def putamen_halves(n_slices: int = 5) -> tuple[np.ndarray, np.ndarray]:
    """Anterior and posterior halves of the projected AAL putamen (split at its median row)."""
    masks = sbr_measures.slab_masks(n_slices)
    putamen = masks["putamen_l"] | masks["putamen_r"]
    rows = np.nonzero(putamen)[0]
    split = np.median(rows)
    index = np.arange(putamen.shape[0])[:, None]
    # rows run along MNI y, posterior to anterior
    return putamen & (index > split), putamen & (index <= split)


def region_ratios(mean_slab: np.ndarray, n_slices: int = 5) -> dict[str, float]:
    """Caudate/putamen and anterior/posterior putamen ratios of mean intensity."""
    masks = sbr_measures.slab_masks(n_slices)
    caudate = mean_slab[masks["caudate_l"] | masks["caudate_r"]].mean()
    putamen = mean_slab[masks["putamen_l"] | masks["putamen_r"]].mean()
    anterior, posterior = putamen_halves(n_slices)
    return {
        "caudate_putamen_ratio": float(caudate / putamen),
        "anterior_posterior_putamen_ratio": float(
            mean_slab[anterior].mean() / mean_slab[posterior].mean()
        ),
    }


def putamen_profile(mean_slab: np.ndarray, n_slices: int = 5) -> tuple[np.ndarray, np.ndarray]:
    """Mean over the putamen pixels of each row: ``(row indices, means)``, posterior first."""
    masks = sbr_measures.slab_masks(n_slices)
    putamen = masks["putamen_l"] | masks["putamen_r"]
    rows = np.flatnonzero(putamen.any(axis=1))
    return rows, np.array([mean_slab[r][putamen[r]].mean() for r in rows])


def highpass_sd(slabs: np.ndarray, sigma: float = HIGHPASS_SIGMA) -> np.ndarray:
    """Per slab: SD in the striatal window of the slab minus its Gaussian blur (fine noise)."""
    slabs = np.asarray(slabs, dtype=np.float64)
    blurred = ndimage.gaussian_filter(slabs, sigma=(0, sigma, sigma), mode="nearest")
    return _window(slabs - blurred).reshape(len(slabs), -1).std(axis=1)


def noise_power_spectrum(slabs: np.ndarray, sigma: float = HIGHPASS_SIGMA) -> tuple:
    """Radial noise power spectrum of the fine-scale residual in the striatal window.

    Per slab: the residual of :func:`highpass_sd`, Hann-windowed, its 2D power spectrum averaged
    over rings of radial frequency; the median over slabs.  Returns ``(frequency, power)``:
    frequency in cycles/mm (2 mm pixels, 0 excluded, up to Nyquist), power per ring.
    """
    slabs = np.asarray(slabs, dtype=np.float64)
    blurred = ndimage.gaussian_filter(slabs, sigma=(0, sigma, sigma), mode="nearest")
    residual = _window(slabs - blurred)
    h, w = residual.shape[1:]
    taper = np.outer(np.hanning(h), np.hanning(w))
    power = np.abs(np.fft.fft2(residual * taper)) ** 2 / taper.sum() ** 2
    fy, fx = np.meshgrid(np.fft.fftfreq(h, PIXEL_MM), np.fft.fftfreq(w, PIXEL_MM), indexing="ij")
    radius = np.hypot(fy, fx)
    edges = np.linspace(0.0, 0.5 / PIXEL_MM, NPS_BINS + 1)
    ring = np.digitize(radius, edges) - 1
    inside = (ring >= 0) & (ring < NPS_BINS) & (radius > 0)
    per_ring = np.stack(
        [power[:, inside & (ring == k)].mean(axis=1) for k in range(NPS_BINS)], axis=1
    )
    return 0.5 * (edges[1:] + edges[:-1]), np.median(per_ring, axis=0)


def nps_mean_frequency(slabs: np.ndarray) -> float:
    """Power-weighted mean radial frequency (cycles/mm) of :func:`noise_power_spectrum`:
    higher for finer-grained noise."""
    freq, power = noise_power_spectrum(slabs)
    return float(np.sum(freq * power) / np.sum(power))


def sibling_share(slabs: np.ndarray, labels, null_quantile: float = 0.99) -> dict:
    """Per label, the share of images that the slab cohorts' grouping would pair as images of
    one subject (:func:`datspect.cohorts.slab_folder.similarity_pairs`)."""
    labels = np.asarray(labels)
    if not all(np.any(labels == k) for k in LABELS):
        return {}  # the null threshold needs images of both labels
    pairs, _, _ = slab_folder.similarity_pairs(slabs, labels, null_quantile)
    paired = np.zeros(len(labels), bool)
    for a, b in pairs:
        paired[[a, b]] = True
    return {int(k): float(paired[labels == k].mean()) for k in LABELS if np.any(labels == k)}


def slab_sbr(slabs: np.ndarray, sbr: Mapping, n_slices: int) -> pd.DataFrame:
    """Per slab the AAL and HV putamen SBR (columns ``sbr_aal``, ``sbr_hv``)."""
    out = {}
    for method, func in (
        ("sbr_aal", sbr_measures.aal_sbr_slab),
        ("sbr_hv", sbr_measures.hv_sbr_slab),
    ):
        kwargs = sbr_arguments(sbr, method, slab=True)
        out[method] = [func(s, n_slices=n_slices, **kwargs)[SBR_COLUMN[method]] for s in slabs]
    return pd.DataFrame(out)


def pooled_pixels(slabs: np.ndarray) -> np.ndarray:
    """2x2 mean-pooled pixels, one row per slab (the odd last row and column dropped)."""
    n, h, w = slabs.shape
    h2, w2 = h // 2 * 2, w // 2 * 2
    pooled = slabs[:, :h2, :w2].reshape(n, h2 // 2, 2, w2 // 2, 2).mean(axis=(2, 4))
    return pooled.reshape(n, -1)


def discriminator_accuracy(
    sim: np.ndarray, real: np.ndarray, *, seed: int, folds: int = 5
) -> float:
    """Cross-validated balanced accuracy of a linear classifier telling ``sim`` from ``real``.

    L2 logistic regression (C = 1, class-weighted) on standardized 2x2-pooled pixels, stratified
    k-fold (k = ``folds``, fewer when a set is smaller; NaN below 2 images a set), shuffled with
    ``seed``.
    """
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import StratifiedKFold, cross_val_predict
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    k = min(folds, len(sim), len(real))
    if k < 2:
        return float("nan")
    x = pooled_pixels(np.concatenate([sim, real]))
    y = np.r_[np.ones(len(sim), int), np.zeros(len(real), int)]
    model = make_pipeline(
        StandardScaler(),
        LogisticRegression(C=1.0, class_weight="balanced", max_iter=2000),
    )
    cv = StratifiedKFold(n_splits=k, shuffle=True, random_state=seed)
    pred = cross_val_predict(model, x, y, cv=cv)
    recalls = [np.mean(pred[y == c] == c) for c in (0, 1)]
    return float(np.mean(recalls))


def realism_table(
    sim: np.ndarray,
    sim_labels,
    real: np.ndarray,
    real_labels,
    *,
    sbr: Mapping,
    n_slices: int,
    seed: int,
) -> pd.DataFrame:
    """The rows of ``results/qc/realism.tsv`` (see the module docstring) for scaled slabs."""
    sim_labels, real_labels = np.asarray(sim_labels), np.asarray(real_labels)
    sim_sbr, real_sbr = slab_sbr(sim, sbr, n_slices), slab_sbr(real, sbr, n_slices)
    sim_siblings, real_siblings = sibling_share(sim, sim_labels), sibling_share(real, real_labels)
    rows = []

    def one_set(measure, label, s, r):
        rows.append([measure, label, s, r, s / r if r else np.nan, s - r])

    def between(measure, label, value):
        rows.append([measure, label, np.nan, np.nan, np.nan, value])

    for label in LABELS:
        s, r = sim[sim_labels == label], real[real_labels == label]
        if not len(s) or not len(r):
            continue
        s_mean, r_mean = s.mean(axis=0), r.mean(axis=0)
        one_set("n_images", label, float(len(s)), float(len(r)))
        between("class_mean_correlation", label, window_correlation(s_mean, r_mean))
        one_set("striatal_peak", label, striatal_peak(s_mean), striatal_peak(r_mean))
        s_ratios, r_ratios = region_ratios(s_mean, n_slices), region_ratios(r_mean, n_slices)
        for key in s_ratios:
            one_set(key, label, s_ratios[key], r_ratios[key])
        for method in SBR_COLUMN:
            sv = sim_sbr[method].to_numpy()[sim_labels == label]
            rv = real_sbr[method].to_numpy()[real_labels == label]
            one_set(f"{method}_median", label, float(np.median(sv)), float(np.median(rv)))
            between(f"{method}_wasserstein", label, float(stats.wasserstein_distance(sv, rv)))
            between(f"{method}_ks", label, float(stats.ks_2samp(sv, rv).statistic))
        one_set(
            "highpass_sd", label, float(np.median(highpass_sd(s))), float(np.median(highpass_sd(r)))
        )
        one_set("nps_mean_frequency", label, nps_mean_frequency(s), nps_mean_frequency(r))
        nan = float("nan")
        one_set("sibling_share", label, sim_siblings.get(label, nan), real_siblings.get(label, nan))
        between(
            "discriminator_balanced_accuracy",
            label,
            discriminator_accuracy(s, r, seed=seed + label),
        )
    return pd.DataFrame(rows, columns=COLUMNS)
