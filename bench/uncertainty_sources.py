"""Which per-split uncertainty should carry the inconclusive band: cost and catch rate, measured.

Issue 17 asks for an uncertainty one split can produce without leakage, picked by what it costs
and how many errors it catches.  This reads a finished run (its CNN checkpoints, inputs and
``scores.tsv``) and puts each split's band, chosen on that split's validation part exactly as
the workflow does (:func:`datspect.evaluation.scoring.calibrate_cnn`), on three sources:

- ``single_pass``: the calibrated probability of the network's one forward pass;
- ``mc_dropout``: the mean logit of the run's MC-dropout passes (``logit_mc`` of scores.tsv);
- ``tta``: the mean logit over ``--views`` test-time augmentations drawn from the run's own
  training augmentation (``cnn.train.augment``: L/R flips, shifts, rotations, intensity scale),
  seeded per model.

A deep ensemble per split is not measured: it costs one training per member (the run's
``train_cnn`` job time times the members) where the three above cost forward passes only.

Prints, per source: forward-pass milliseconds per image, and per setting the mean ± SD over
splits of share flagged, accuracy on conclusive scans and share of errors flagged on the
development test parts; the split ensemble (as ``classify`` calls it) on each independent cohort;
and on simulated cohorts the flag rate per truth pattern::

    .venv/bin/python bench/uncertainty_sources.py --workdir RUN [--views 20] [--out OUT]

Writes ``OUT/uncertainty_sources.tsv`` (test parts and ensembles) and
``OUT/uncertainty_sources_patterns.tsv``; ``OUT`` defaults to ``bench/out``.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from datspect import schema
from datspect.cnn.checkpoint import load_checkpoint
from datspect.cnn.data import _draw_params, augment_batch, resolve_augment
from datspect.cnn.train import _log_odds, mc_dropout_logits
from datspect.evaluation import scoring, uncertainty
from datspect.features.cnn_bundle import load_inputs
from datspect.io.tsv import read_tsv
from datspect.seeds import derive_seed

SOURCES = ("single_pass", "mc_dropout", "tta")


def tta_logits(model, arrays: np.ndarray, augment: dict, views: int, seed: int) -> np.ndarray:
    """Log-odds of reduced for each of ``views`` augmentations of every image, ``(N, views)``;
    the first view is the image itself."""
    x = torch.from_numpy(np.ascontiguousarray(arrays, dtype=np.float32)).unsqueeze(1)
    gen = torch.Generator().manual_seed(int(seed))
    out = []
    with torch.no_grad():
        out.append(_log_odds(model(x)).numpy())
        for _ in range(views - 1):
            p = _draw_params(len(x), x.ndim - 2, augment, gen)
            out.append(_log_odds(model(augment_batch(x, **p))).numpy())
    return np.stack(out, axis=1)


def timed(fn):
    start = time.perf_counter()
    result = fn()
    return result, time.perf_counter() - start


def score_model(model_dir: Path, inputs: dict, views: int, method: str, band: dict):
    """The three sources' predictions of one (setting, split) model, and their seconds."""
    scores = read_tsv(model_dir / "scores.tsv")
    model, meta = load_checkpoint(model_dir / "model.pt")
    torch.set_num_threads(1)
    arrays = np.stack(
        [
            inputs[(c, s)][i]
            for c, s, i in scores[["cohort", "subject_id", "image_setting"]].itertuples(False)
        ]
    )
    augment = resolve_augment(meta["train"].get("augment")) | {"enabled": True}
    seed = derive_seed(int(meta["seed"]), "tta")
    with torch.no_grad():
        _, single = timed(lambda: model(torch.from_numpy(arrays).unsqueeze(1)))
    tta, tta_s = timed(lambda: tta_logits(model, arrays, augment, views, seed))
    _, mc_s = timed(lambda: mc_dropout_logits(model, arrays, band["mc_dropout_samples"], seed))
    seconds = {"single_pass": single, "mc_dropout": mc_s, "tta": tta_s}
    tables = {
        "single_pass": (scores, "single_pass"),
        "mc_dropout": (scores, "mc_dropout"),
        "tta": (scores.assign(logit_mc=tta.mean(axis=1)), "mc_dropout"),
    }
    out = []
    for source, (table, band_on) in tables.items():
        _, predictions = scoring.calibrate_cnn(table, method, band | {"source": band_on})
        out.append(predictions.assign(source=source))
    return pd.concat(out, ignore_index=True), seconds, len(arrays)


def summarise(predictions: pd.DataFrame, development: str, independent) -> pd.DataFrame:
    rows = []
    test = predictions[predictions["cohort"] == development]
    for (source, setting, split), part in test.groupby(["source", "setting", "split"]):
        rows.append(
            {"source": source, "cohort": development, "setting": setting, "split": split}
            | uncertainty.flag_counts(part)
        )
    for source, part in predictions.groupby("source"):
        ensemble = uncertainty.ensemble_calls(part, independent, "p_reduced_mc")
        for cohort, rows_ in ensemble.groupby("cohort") if len(ensemble) else ():
            rows.append(
                {"source": source, "cohort": cohort, "setting": "mixed", "split": "ensemble"}
                | uncertainty.flag_counts(rows_)
            )
    return pd.DataFrame(rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--workdir", type=Path, required=True)
    parser.add_argument("--views", type=int, default=20)
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "out")
    args = parser.parse_args()
    work = args.workdir
    method = schema.defaults("evaluation", "calibration")["method"]
    band = schema.defaults("evaluation", "uncertainty")
    sheets = {p.parent.name: read_tsv(p) for p in sorted((work / "data").glob("*/cohort.tsv"))}
    inputs = load_inputs(sorted((work / "features").glob("*/cnn_inputs.npz")))
    model_dirs = sorted((work / "results/models/cnn").glob("*/split-*"))
    if not model_dirs:
        raise SystemExit(f"{work}: no results/models/cnn/*/split-*; give a finished run")
    found, seconds, images = [], {s: 0.0 for s in SOURCES}, 0
    for model_dir in model_dirs:
        predictions, spent, n = score_model(model_dir, inputs, args.views, method, band)
        found.append(predictions)
        seconds = {s: seconds[s] + spent[s] for s in SOURCES}
        images += n
    predictions = pd.concat(found, ignore_index=True)
    development = read_tsv(model_dirs[0] / "scores.tsv")
    development = str(development.loc[development["part"] == "test", "cohort"].iloc[0])
    independent = sorted(set(sheets) - {development})
    table = summarise(predictions, development, independent)
    simulated = [s for s in sheets.values() if "pattern" in s]
    patterns = pd.concat(
        [
            uncertainty.pattern_flags(part, pd.concat(simulated)).assign(source=source)
            for source, part in predictions.groupby("source")
        ]
        if simulated
        else [pd.DataFrame()]
    )
    args.out.mkdir(parents=True, exist_ok=True)
    table.to_csv(args.out / "uncertainty_sources.tsv", sep="\t", index=False)
    patterns.to_csv(args.out / "uncertainty_sources_patterns.tsv", sep="\t", index=False)

    print(f"{len(model_dirs)} models, {images} scored images, {args.views} TTA views")
    for source in SOURCES:
        print(f"{source}: {1000 * seconds[source] / images:.2f} ms per image (1 thread)")
    columns = ["share_flagged", "accuracy_conclusive", "share_errors_flagged"]
    splits = table[table["split"] != "ensemble"]
    print("\nDevelopment test parts, mean ± SD over splits:")
    for (setting, source), part in splits.groupby(["setting", "source"]):
        cells = [f"{c} {part[c].mean():.3f} ± {part[c].std():.3f}" for c in columns]
        errors = f"errors flagged {part['n_errors_flagged'].sum()}/{part['n_errors'].sum()}"
        print(f"  {setting:9s} {source:11s} " + ", ".join(cells) + f", {errors}")
    print("\nSplit ensemble on independent cohorts:")
    for _, row in table[table["split"] == "ensemble"].iterrows():
        cells = [f"{c} {row[c]:.3f}" for c in columns]
        print(f"  {row['cohort']} {row['source']:11s} " + ", ".join(cells))
    if len(patterns):
        print("\nFlag rate per truth pattern (mixed, pooled over splits):")
        mixed = patterns[patterns["setting"] == "mixed"]
        for (cohort, source), part in mixed.groupby(["cohort", "source"]):
            rates = ", ".join(
                f"{r.pattern} {r.share_flagged:.3f} (n {r.n})" for r in part.itertuples()
            )
            print(f"  {cohort} {source:11s} {rates}")


if __name__ == "__main__":
    main()
