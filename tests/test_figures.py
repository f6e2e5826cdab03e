"""Figures: each function writes one sane PNG atomically from small synthetic tables, styled."""

from __future__ import annotations

import importlib
import inspect
import pkgutil

import numpy as np
import pandas as pd
import pytest
from matplotlib.figure import Figure
from PIL import Image

import datspect.figures
from datspect.errors import InputError
from datspect.figures import qc, results, sbr, style, training
from datspect.space.slab_grid import SLAB_SHAPE
from datspect.vocabulary import METHODS
from datspect.vocabulary import STUDY_SETTINGS as SETTINGS

SPLITS = (0, 1, 2)
#: Cutoffs of the synthetic sbr_aal models per training setting (split s adds 0.01 * s).
CUTOFFS = {"original": 1.9, "smoothed": 1.2, "mixed": 1.55}


def _check_png(path, fig, *, min_px=300, max_px=6000):
    """A non-empty PNG of a sane size, nothing else (no temporary file) in its folder, and a
    figure drawn in the project's style (no top/right frame lines)."""
    assert [p.name for p in path.parent.iterdir()] == [path.name]
    assert path.stat().st_size > 1000
    with Image.open(path) as img:
        assert img.format == "PNG"
        assert min_px <= img.width <= max_px and min_px <= img.height <= max_px
    for ax in fig.axes:
        assert not ax.spines["top"].get_visible() and not ax.spines["right"].get_visible()


def _figure_functions():
    """Every public function of every figures module that writes a PNG: it takes ``out`` and
    returns the Figure."""
    for info in pkgutil.iter_modules(datspect.figures.__path__):
        module = importlib.import_module(f"datspect.figures.{info.name}")
        for name, func in inspect.getmembers(module, inspect.isfunction):
            signature = inspect.signature(func)
            if (
                not name.startswith("_")
                and func.__module__ == module.__name__
                and "out" in signature.parameters
                and signature.return_annotation in (Figure, "Figure")
            ):
                yield f"{module.__name__}.{name}", func


def test_every_figure_function_draws_in_the_style():
    functions = dict(_figure_functions())
    assert {"datspect.figures.results.roc_curves", "datspect.figures.style.placeholder"} <= set(
        functions
    )
    unstyled = [
        n for n, func in functions.items() if getattr(func, "style", None) is not style.STYLE
    ]
    assert not unstyled, f"not decorated with datspect.figures.style.styled: {unstyled}"


@pytest.fixture(scope="module")
def predictions() -> pd.DataFrame:
    """Scored images: ppmi in every setting, clinical with the mixed models only."""
    rng = np.random.default_rng(0)
    rows = []
    for cohort, settings in (("ppmi", SETTINGS), ("clinical", ("mixed",))):
        for method in METHODS:
            for setting in settings:
                for split in SPLITS:
                    labels = np.repeat([0, 1], 8)
                    score = labels * 1.5 + rng.normal(0, 1, labels.size)
                    cutoff = CUTOFFS[setting] + 0.01 * split if method != "cnn" else np.nan
                    for i, (label, s) in enumerate(zip(labels, score, strict=True)):
                        rows.append(
                            {
                                "cohort": cohort,
                                "subject_id": f"{cohort}{i:02d}",
                                "image_setting": "smoothed"
                                if setting == "smoothed"
                                else "original",
                                "label": int(label),
                                "score": -s if method != "cnn" else 1 / (1 + np.exp(-s)),
                                "score_reduced": s,
                                "prediction": int(s > 0.75),
                                "method": method,
                                "setting": setting,
                                "split": split,
                                "cutoff": cutoff,
                            }
                        )
    return pd.DataFrame(rows)


@pytest.fixture(scope="module")
def per_split(predictions) -> pd.DataFrame:
    correct = predictions["label"] == predictions["prediction"]
    keys = ["cohort", "method", "setting", "split"]
    table = predictions.assign(accuracy=correct).groupby(keys)["accuracy"].mean().reset_index()
    return table.assign(n=16)


def test_accuracy_bars(tmp_path, per_split):
    out = tmp_path / "accuracy.png"
    fig = results.accuracy_bars(per_split, out, study_cohort="ppmi")
    _check_png(out, fig)
    dev, indep = fig.axes[:2]
    assert dev.get_title().startswith("ppmi (development")
    # 3 methods x 3 settings on the development cohort, 3 mixed bars on the independent one.
    assert len(dev.patches) == 9 and len(indep.patches) == 3
    labels = [t.get_text() for t in fig.legends[0].get_texts()]
    assert labels == ["original", "smoothed", "mixed", "study (mean ± SD)"]
    assert "study (mean ± SD)" not in indep.get_legend_handles_labels()[1]
    means = sorted(p.get_height() for p in dev.patches)
    expected = per_split[per_split["cohort"] == "ppmi"].groupby(["method", "setting"])["accuracy"]
    np.testing.assert_allclose(means, sorted(expected.mean()))


def test_roc_curves_average_over_splits(tmp_path, predictions):
    out = tmp_path / "roc.png"
    perfect = predictions.assign(score_reduced=predictions["label"].astype(float))
    fig = results.roc_curves(perfect, out, "ppmi")
    _check_png(out, fig)
    panels = fig.axes[:3]
    assert [ax.get_title() for ax in panels] == ["AAL-SBR", "HV-SBR", "CNN"]
    labels = panels[0].get_legend_handles_labels()[1]
    assert labels[1:] == [f"{s}: AUC 1.000 ± 0.000" for s in SETTINGS]
    fig = results.roc_curves(predictions, out, "clinical")
    _check_png(out, fig)


def test_confusion_matrices_one_panel_per_method_and_setting(tmp_path, predictions):
    out = tmp_path / "confusion.png"
    fig = results.confusion_matrices(predictions, out, "ppmi")
    _check_png(out, fig)
    assert len([ax for ax in fig.axes if ax.images]) == 9


def test_sbr_distributions_draws_one_cutoff_per_setting(tmp_path, predictions):
    rng = np.random.default_rng(1)
    labels = np.repeat([0, 1], 20)
    original = np.where(labels == 1, 1.2, 2.6) + rng.normal(0, 0.25, labels.size)
    table = pd.concat(
        [
            pd.DataFrame(
                {
                    "cohort": "ppmi",
                    "subject_id": [f"s{i}" for i in range(labels.size)],
                    "image_setting": image_setting,
                    "label": labels,
                    "putamen": original * factor,
                }
            )
            for image_setting, factor in (("original", 1.0), ("smoothed", 0.55))
        ],
        ignore_index=True,
    )
    out = tmp_path / "sbr.png"
    fig = sbr.sbr_distributions(table, predictions, out, cohort="ppmi")
    _check_png(out, fig)
    panels = [ax for ax in fig.axes if ax.get_title()]
    assert [ax.get_title().split()[0] for ax in panels] == ["original", "smoothed"]
    for ax in panels:
        drawn = {line.get_gid(): line.get_xdata()[0] for line in ax.lines}
        assert set(drawn) == {f"cutoff:{s}" for s in SETTINGS}
        for setting, cutoff in CUTOFFS.items():
            assert drawn[f"cutoff:{setting}"] == pytest.approx(cutoff + 0.01)  # mean over splits
    # The original-trained cutoff suits original images and calls most smoothed normals reduced.
    legend = {t.get_text().split()[0]: t.get_text() for t in panels[1].get_legend().get_texts()}
    correct = float(legend["original-trained"].split()[-2].rstrip("%"))
    assert correct < 80
    with pytest.raises(InputError, match="not an SBR method"):
        sbr.sbr_distributions(table, predictions, out, cohort="ppmi", method="cnn")


def test_qc_mosaic_outlines_every_slab(tmp_path):
    rng = np.random.default_rng(2)
    slabs = [(f"sub-{i:02d} ok", rng.random(SLAB_SHAPE)) for i in range(7)]
    out = tmp_path / "mosaic.png"
    fig = qc.qc_mosaic(slabs, out, ncols=4)
    _check_png(out, fig)
    shown = [ax for ax in fig.axes if ax.images]
    assert [ax.get_title() for ax in shown] == [t for t, _ in slabs]
    assert all(any(c.get_gid() == "putamen-outline" for c in ax.collections) for ax in shown)
    # Anterior (the last slab row) at the top of the displayed image.
    assert shown[0].images[0].origin == "lower"
    fig = qc.qc_mosaic(slabs[:1], tmp_path / "mosaic.png", putamen_outline=False)
    assert not any(c.get_gid() == "putamen-outline" for ax in fig.axes for c in ax.collections)
    with pytest.raises(InputError, match="expected"):
        qc.qc_mosaic([("bad", np.zeros((91, 109)))], tmp_path / "bad.png")


def test_training_curves_one_line_per_split(tmp_path):
    epochs = np.arange(1, 6)
    histories = {
        (setting, split): pd.DataFrame(
            {
                "epoch": epochs,
                "train_loss": 0.7 / epochs,
                "val_loss": 0.8 / epochs + 0.01 * split,
                "val_accuracy": 1 - 0.3 / epochs,
                "seconds": 1.0,
            }
        )
        for setting in SETTINGS
        for split in SPLITS
    }
    out = tmp_path / "training.png"
    fig = training.training_curves(histories, out)
    _check_png(out, fig)
    assert len(fig.axes) == 6
    loss, accuracy = fig.axes[:3], fig.axes[3:]
    # validation (gid = split) and training (gid = train:split) loss per split; accuracy only
    assert all(
        sorted(line.get_gid() for line in ax.lines)
        == sorted([str(k) for k in SPLITS] + [f"train:{k}" for k in SPLITS])
        for ax in loss
    )
    assert all(len(ax.lines) == len(SPLITS) for ax in accuracy)


def test_normalization_qc_summary(tmp_path):
    rng = np.random.default_rng(3)
    rows = []
    for cohort in ("ppmi", "clinical"):
        for i in range(12):
            error = rng.gamma(2.0, 1.0)
            for setting in ("original", "smoothed"):
                rows.append(
                    {
                        "cohort": cohort,
                        "subject_id": f"{cohort}{i}",
                        "setting": setting,
                        "metric": "pearson_r_template",
                        "correlation": rng.uniform(0.7, 0.99),
                        "striatum_dice": 0.8,
                        "centroid_error_mm": error,
                        "flag": "ok",
                    }
                )
    table = pd.DataFrame(rows)
    out = tmp_path / "qc.png"
    fig = qc.normalization_qc_summary(table, out, min_correlation=0.8, max_centroid_error_mm=4.0)
    _check_png(out, fig)
    ax_err, ax_r = fig.axes[:2]
    n_fail = int((table.groupby("subject_id")["centroid_error_mm"].first() > 4.0).sum())
    labels = ax_err.get_legend_handles_labels()[1]
    assert sum(int(label.split(", ")[1].split()[0]) for label in labels[:-1]) == n_fail
    assert [line.get_xdata()[0] for line in ax_r.lines if line.get_gid() == "threshold"] == [0.8]
    # Real scans: no centroid error anywhere, the panel says so instead of failing.
    fig = qc.normalization_qc_summary(
        table.assign(centroid_error_mm=np.nan), out, min_correlation=0.8, max_centroid_error_mm=4.0
    )
    _check_png(out, fig)


def test_independent_results_bars_and_roc_per_method(tmp_path, predictions, per_split):
    metrics = per_split.assign(sensitivity=0.8, specificity=0.7, auc=0.9)
    out = tmp_path / "independent.png"
    fig = results.independent_results(
        metrics, predictions, out, cohorts=["clinical"], development="ppmi"
    )
    _check_png(out, fig)
    bars, roc = fig.axes[:2]
    assert bars.get_title() == "clinical: mixed-trained models of 3 splits"
    for method in METHODS:
        heights = [p.get_height() for p in bars.patches if p.get_gid() == f"bars:{method}"]
        rows = metrics[(metrics["cohort"] == "clinical") & (metrics["method"] == method)]
        expected = [rows["accuracy"].mean(), 0.8, 0.7, 0.9]
        np.testing.assert_allclose(heights, expected)
    assert {line.get_gid() for line in roc.lines} >= {f"roc:{m}" for m in METHODS}
    # the development cohort's values of the same (mixed) models are the white diamonds
    diamonds = [line for line in bars.lines if line.get_marker() == "D"]
    dev = metrics[(metrics["cohort"] == "ppmi") & (metrics["setting"] == "mixed")]
    assert diamonds[0].get_ydata()[0] == pytest.approx(
        dev.loc[dev["method"] == "sbr_aal", "accuracy"].mean()
    )
    with pytest.raises(InputError, match="no rows for cohort 'elsewhere'"):
        results.independent_results(
            metrics, predictions, out, cohorts=["elsewhere"], development="ppmi"
        )


def test_robustness_curve_mean_and_sd_over_splits(tmp_path):
    rows = []
    for setting, slope in (("original", -0.02), ("mixed", -0.002)):
        for method in METHODS:
            for split in SPLITS:
                for fwhm in (0.0, 6.0, 12.0):
                    accuracy = 0.95 + slope * fwhm + 0.01 * split
                    rows.append(
                        {
                            "fwhm": fwhm,
                            "method": method,
                            "trained_setting": setting,
                            "split": split,
                            "accuracy": accuracy,
                        }
                    )
    table = pd.DataFrame(rows)
    out = tmp_path / "robustness.png"
    fig = results.robustness_curve(table, out, setting_fwhm_mm=18.0)
    _check_png(out, fig)
    panels = fig.axes[:2]
    assert [ax.get_title() for ax in panels] == [
        "trained on original (3 splits)",
        "trained on mixed (3 splits)",
    ]
    for ax, slope in zip(panels, (-0.02, -0.002), strict=True):
        line = next(
            line for line in ax.lines if line.get_gid() == f"{ax.get_title().split()[2]}:cnn"
        )
        np.testing.assert_allclose(line.get_ydata(), 0.96 + slope * np.array([0.0, 6.0, 12.0]))
    labels = [t.get_text() for t in fig.legends[0].get_texts()]
    assert labels == ["smoothed setting (18 mm)", "AAL-SBR", "HV-SBR", "CNN"]
    with pytest.raises(InputError, match="missing column"):
        results.robustness_curve(table.drop(columns="fwhm"), out)


@pytest.mark.workflow
def test_small_run_makes_every_figure(small_run):
    from test_report import FIGURES

    for path in FIGURES:
        png = small_run / path
        assert png.is_file(), f"{path} was not made"
        assert png.stat().st_size > 20_000, f"{path} is too small to hold a figure"
        with Image.open(png) as img:
            assert img.format == "PNG" and min(img.size) >= 300, path
            # more than a blank canvas: many distinct colours
            assert len(img.convert("RGB").getcolors(maxcolors=1_000_000) or []) > 50, path


def test_placeholder_says_why(tmp_path):
    out = tmp_path / "placeholder.png"
    fig = style.placeholder(out, "no CNN in this run")
    _check_png(out, fig, min_px=200)
    assert [t.get_text() for t in fig.axes[0].texts] == ["no CNN in this run"]
