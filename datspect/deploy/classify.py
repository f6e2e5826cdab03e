"""Classify new scans with an exported model (the logic of the ``classify`` command).

Each scan goes through the workflow's own steps with the workflow's own parameters, read from
the export's manifest: spatial normalization to the exported template
(:func:`datspect.preprocess.register.estimate_from_config`, as the normalize rule) and its QC, the
AAL and hottest-voxels putamen SBRs compared with the mixed-setting cutoffs, the slab through the
CNN ensemble, and integrated-gradients saliency.  A scan whose normalization fails the QC is
reported with that status and not classified: its SBRs and slab would be measured in the wrong
place.  A scan may also be on the MNI grid already (registration skipped) or a published-style
2D slab; which kind it is, and what each export does with each kind, is
:mod:`datspect.deploy.inputs`: the ``input_kind`` and ``registered`` columns say what was done,
``sbr_measurement`` which SBR (3D or slab) was compared with the cutoffs.

Decisions, also stated in the manifest:

* **SBR**: reduced if the SBR is below the mean of the ten split cutoffs; ``*_votes`` counts
  the split cutoffs that call the scan reduced; *inconclusive* (borderline) when
  ``|SBR - mean cutoff|`` is below the median of the splits' borderline bands (``*_band``).
* **CNN**: each model's calibrated P(reduced) (its split's calibration map, fitted on that
  split's validation part and stored in the manifest; an export without one uses the softmax),
  as mean ± SD (sample SD, ddof 1) over the models; reduced if the mean is >= 0.5;
  *inconclusive* when the mean of the probabilities the bands were chosen on (MC dropout by
  default) lies within the median band of 0.5 (``cnn_band``; ``cnn_reason`` says why).  The
  models *disagree* when at least one gives P >= 0.5 and at least one P < 0.5.

The bands were chosen on each split's validation part
(:mod:`datspect.evaluation.uncertainty`), and the workflow scores this very ensemble rule on
its independent cohorts (``split`` ``ensemble`` in results/metrics/uncertainty.tsv).
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from datspect.deploy import export, inputs
from datspect.errors import InputError
from datspect.evaluation.calibration import apply_calibration
from datspect.features import sbr, slab
from datspect.features.sbr_config import sbr_arguments
from datspect.io.tsv import write_tsv
from datspect.preprocess import register
from datspect.seeds import derive_seed
from datspect.vocabulary import METHOD_NAMES, SBR_COLUMN

TABLE = "classification.tsv"
#: The columns of ``classification.tsv``; a scan that failed QC has only the first ones filled.
COLUMNS = [
    "scan",
    "status",
    "note",
    "report",
    "seconds",
    "qc_correlation",
    "input_kind",
    "registered",
    "sbr_measurement",
    *(
        f"{method}_{field}"
        for method in SBR_COLUMN
        for field in ("putamen", "putamen_l", "putamen_r", "cutoff", "band", "call", "votes")
    ),
    "cnn_p_mean",
    "cnn_p_sd",
    "cnn_p_min",
    "cnn_p_max",
    "cnn_band",
    "cnn_call",
    "cnn_reason",
    "cnn_votes",
    "cnn_disagreement",
]
_SCAN_SUFFIXES = (".nii.gz", ".nii", ".dcm", ".ima", ".png")


@dataclass
class ScanResult:
    """What one scan gave: its table row and the arrays its report page shows."""

    row: dict
    slab: np.ndarray
    probabilities: np.ndarray | None = None
    saliency: np.ndarray | None = None

    @property
    def classified(self) -> bool:
        return self.row["status"] == "classified"


def report_names(scans: Sequence) -> list[str]:
    """A distinct report name per scan, from its file or folder name without image suffixes."""
    names, seen = [], {}
    for scan in scans:
        name = Path(scan).resolve().name
        lower = name.lower()
        for suffix in _SCAN_SUFFIXES:
            if lower.endswith(suffix) and len(name) > len(suffix):
                name = name[: -len(suffix)]
                break
        count = seen.get(name.lower(), 0) + 1
        seen[name.lower()] = count
        names.append(name if count == 1 else f"{name}-{count}")
    return names


def _content_seed(global_seed: int, img) -> int:
    """Registration seed from the scan's voxels and affine: the same scan, the same result."""
    h = hashlib.sha256(np.ascontiguousarray(img.dataobj, dtype=np.float32).tobytes())
    h.update(np.asarray(img.affine, dtype=np.float64).tobytes())
    return derive_seed(global_seed, "classify", h.hexdigest())


def _sbr_fields(model: export.ExportedModel, method: str, values: dict) -> dict:
    key = SBR_COLUMN[method]
    cutoffs = model.method_cutoffs(method)
    value = float(values[key])
    cut, band = float(cutoffs.mean()), model.sbr_band(method)
    call = "reduced" if value < cut else "normal"
    return {
        f"{method}_putamen": value,
        f"{method}_putamen_l": float(values[f"{key}_l"]),
        f"{method}_putamen_r": float(values[f"{key}_r"]),
        f"{method}_cutoff": cut,
        f"{method}_band": band,
        f"{method}_call": "inconclusive" if abs(value - cut) < band else call,
        f"{method}_votes": f"{int((value < cutoffs).sum())}/{cutoffs.size}",
    }


def measure_sbr(model: export.ExportedModel, volume: np.ndarray, name: str) -> dict:
    """AAL and HV putamen SBRs with the workflow's parameters, and their calls."""
    cfg = model.config["sbr"]
    aal = sbr.aal_sbr(volume, **sbr_arguments(cfg, "sbr_aal"), name=name)
    hv = sbr.hv_sbr(volume, **sbr_arguments(cfg, "sbr_hv"), name=name)
    return _sbr_fields(model, "sbr_aal", aal) | _sbr_fields(model, "sbr_hv", hv)


def measure_slab_sbr(model: export.ExportedModel, slab2d: np.ndarray, name: str) -> dict:
    """The slab SBRs (regions projected onto the slab) a slab run measures, and their calls."""
    cfg, n_slices = model.config["sbr"], model.config["slab"]["n_slices"]
    aal = sbr.aal_sbr_slab(
        slab2d, n_slices=n_slices, **sbr_arguments(cfg, "sbr_aal", slab=True), name=name
    )
    hv = sbr.hv_sbr_slab(
        slab2d, n_slices=n_slices, **sbr_arguments(cfg, "sbr_hv", slab=True), name=name
    )
    return _sbr_fields(model, "sbr_aal", aal) | _sbr_fields(model, "sbr_hv", hv)


def cnn_fields(probabilities: np.ndarray, band_probabilities=None, band: float = 0.0) -> dict:
    """Ensemble summary of the models' P(reduced) (decision, inconclusive band and
    disagreement: module notes); ``band_probabilities`` are those the band was chosen on (the
    MC-dropout ones; None: ``probabilities``), ``band`` its half-width."""
    p = np.asarray(probabilities, dtype=float)
    q = p if band_probabilities is None else np.asarray(band_probabilities, dtype=float)
    votes = int((p >= 0.5).sum())
    call = "reduced" if p.mean() >= 0.5 else "normal"
    inside = abs(q.mean() - 0.5) < band
    where = "inside" if inside else "outside"
    reason = (
        f"mean P(reduced) {q.mean():.3f} {where} the band 0.5 ± {band:.3f}; votes {votes}/{p.size}"
    )
    return {
        "cnn_p_mean": float(p.mean()),
        "cnn_p_sd": float(p.std(ddof=1)) if p.size > 1 else 0.0,
        "cnn_p_min": float(p.min()),
        "cnn_p_max": float(p.max()),
        "cnn_band": float(band),
        "cnn_call": "inconclusive" if inside else call,
        "cnn_reason": reason,
        "cnn_votes": f"{votes}/{p.size}",
        "cnn_disagreement": bool(0 < votes < p.size),
    }


def read_scan(path, model: export.ExportedModel) -> inputs.ScanInput:
    """Read a scan, detect its kind and check that the model takes it (one clear error)."""
    scan = inputs.read_input(path, n_slices=model.config["slab"]["n_slices"])
    inputs.check_fits(scan, model.manifest["cnn"]["input"]["type"])
    return scan


def _normalize(scan: inputs.ScanInput, model, *, register_: bool, threads: int):
    """The scan on the MNI grid, registered or (already on the grid) as it is, and its QC."""
    cfg = model.config
    native_from_mni = None
    mni = scan.image
    if register_:
        native_from_mni = register.estimate_from_config(
            scan.image,
            model.template,
            cfg["preprocess"]["registration"],
            seed=_content_seed(cfg["seed"], scan.image),
            threads=threads,
        )
        mni = register.resample_to_mni(scan.image, native_from_mni)
    qc = register.normalization_qc(
        mni,
        model.template,
        min_correlation=cfg["preprocess"]["qc_min_correlation"],
        native_from_mni=native_from_mni,
    )
    return np.asarray(mni.dataobj, dtype=np.float32), qc


def _qc_note(qc: dict, cfg: dict, registered: bool) -> str:
    why = (
        "the registration had to mirror the image"
        if qc["flag"] == "reflected"
        else f"correlation with the template {qc['correlation']:.3f} < "
        f"{cfg['preprocess']['qc_min_correlation']} (preprocess.qc_min_correlation)"
    )
    fix = (
        "check that the file is a DaTscan SPECT with a correct orientation header"
        if registered
        else "the scan has the MNI 2 mm grid's shape and affine, so it was taken as normalized "
        "and not registered: check that it is normalized, or classify it with --register"
    )
    return f"normalization QC failed: {why}; {fix}"


def classify_scan(
    path, model: export.ExportedModel, *, threads: int = 1, register_mni: bool = False
) -> ScanResult:
    """Read (and detect the kind of), normalize, QC, measure and classify one scan.

    Parameters
    ----------
    path : str or Path
        NIfTI file (3D scan or one-slice slab), DICOM file or folder, or PNG slab
        (:mod:`datspect.deploy.inputs`).
    model : datspect.deploy.export.ExportedModel
        From :func:`datspect.deploy.export.load_model`.
    threads : int
        Registration threads.
    register_mni : bool
        Register a scan on the MNI grid too (``--register``).

    Returns
    -------
    ScanResult
    """
    from datspect.cnn import saliency
    from datspect.cnn.train import mc_dropout_logits, predict_logits

    cfg = model.config
    name = str(path)
    scan = read_scan(path, model)
    steps = inputs.plan(scan.kind, model.input_kind, register=register_mni)
    n_slices, reference = cfg["slab"]["n_slices"], cfg["sbr"]["reference"]
    row = {
        "scan": name,
        "status": "classified",
        "note": "",
        "input_kind": scan.kind,
        "registered": steps.register,
        "qc_correlation": np.nan,
    }
    volume = None
    if scan.kind == "slab":
        pixels = scan.slab
    else:
        volume, qc = _normalize(scan, model, register_=steps.register, threads=threads)
        row["qc_correlation"] = qc["correlation"]
        pixels = slab.project_to_slab(volume, n_slices)
        if qc["flag"] != "ok":
            # Shown on the page only; a misregistered scan may have no usable reference region.
            row["status"] = "qc_failed"
            row["note"] = _qc_note(qc, cfg, steps.register)
            return ScanResult(row=row, slab=pixels / max(float(pixels.max()), 1e-12))
    # the one 2D CNN input: make_slab(volume) is scale_slab(project_to_slab(volume))
    slab2d = slab.scale_slab(pixels, n_slices=n_slices, reference=reference, name=name)
    if steps.sbr == "3D":
        row |= measure_sbr(model, volume, name) | {"sbr_measurement": "3D"}
    elif steps.sbr == "slab":
        row |= measure_slab_sbr(model, pixels, name) | {"sbr_measurement": "slab"}
    else:
        row["note"] = inputs.sbr_skipped_note(model.input_kind)
    nets = [net for _, net, _ in model.cnns]
    # each model's P(reduced) through its own calibration (fitted on its validation part)
    probabilities = np.array(
        [
            float(apply_calibration(cal, predict_logits(net, [slab2d], device="cpu"))[0])
            for _, net, cal in model.cnns
        ]
    )
    band_probabilities = None  # the bands' own probabilities, as they were chosen on
    if model.band_source == "mc_dropout":
        n_samples = cfg["evaluation"]["uncertainty"]["mc_dropout_samples"]
        digest = hashlib.sha256(np.ascontiguousarray(slab2d).tobytes()).hexdigest()
        seed = derive_seed(cfg["seed"], "classify", "mc_dropout", digest)
        band_probabilities = []
        for _, net, cal in model.cnns:
            mean_logit = mc_dropout_logits(net, [slab2d], n_samples, seed, device="cpu").mean(1)
            band_probabilities.append(float(apply_calibration(cal, mean_logit)[0]))
    row |= cnn_fields(probabilities, band_probabilities, model.cnn_band)
    attribution = saliency.ensemble_saliency(nets, slab2d)
    return ScanResult(row=row, slab=slab2d, probabilities=probabilities, saliency=attribution)


def check_scans(scans: Sequence, model: export.ExportedModel) -> None:
    """Read every scan once, so that a bad file, or one the model does not take, stops the run
    before any heavy work."""
    if not scans:
        raise InputError(
            "no scans given; list NIfTI files, DICOM files or DICOM folders, or PNG slabs"
        )
    for scan in scans:
        read_scan(scan, model)


def check_out_dir(out_dir: Path, model_dir: Path) -> None:
    if out_dir.exists() and not out_dir.is_dir():
        raise InputError(f"{out_dir}: --out exists and is not a folder; give a folder path")
    if out_dir.resolve() == model_dir.resolve():
        raise InputError(f"{out_dir}: --out is the model folder; write the results elsewhere")


def run(
    scans: Sequence,
    *,
    model_dir,
    out_dir,
    threads: int = 1,
    register_mni: bool = False,
    log: Callable[[str], None] = print,
) -> pd.DataFrame:
    """Classify ``scans``; write one report page per scan and ``classification.tsv``.

    Everything is checked first (model folder and hashes, output folder, every scan readable
    and of a kind the model takes),
    then each scan is processed; the table is rewritten after every scan, so an interrupted run
    keeps the rows it finished.  Only ``out_dir`` is written to.

    Returns
    -------
    pandas.DataFrame
        The table, one row per scan.
    """
    from datspect.figures.slab import classification_page

    model_dir, out_dir = Path(model_dir), Path(out_dir)
    model = export.load_model(model_dir)
    check_out_dir(out_dir, model_dir)
    check_scans(scans, model)
    out_dir.mkdir(parents=True, exist_ok=True)
    rows = []
    for scan, name in zip(scans, report_names(scans), strict=True):
        start = time.perf_counter()
        result = classify_scan(scan, model, threads=threads, register_mni=register_mni)
        page = out_dir / f"{name}.png"
        classification_page(result, model, page, title=name)
        result.row["report"] = page.name
        result.row["seconds"] = round(time.perf_counter() - start, 2)
        rows.append(result.row)
        table = pd.DataFrame(rows, columns=COLUMNS)
        write_tsv(table, out_dir / TABLE)
        log(summary_line(result.row))
    return table


def summary_line(row: dict) -> str:
    """One line per scan for the terminal."""
    if row["status"] != "classified":
        return f"{row['scan']}: NOT CLASSIFIED, {row['note']}"
    flag = ", MODELS DISAGREE" if row["cnn_disagreement"] else ""
    slab_sbr = "slab " if row.get("sbr_measurement") == "slab" else ""
    sbrs = (
        "".join(
            f"{METHOD_NAMES[m]} {slab_sbr}{row[f'{m}_putamen']:.2f} {row[f'{m}_call']} "
            f"(cutoff {row[f'{m}_cutoff']:.2f} ± {row[f'{m}_band']:.2f}); "
            for m in SBR_COLUMN
        )
        if row.get("sbr_measurement")
        else "no SBR (3D cutoffs, slab input); "
    )
    how = f"{row['input_kind']} input, {'registered' if row['registered'] else 'not registered'}"
    return (
        f"{row['scan']}: CNN {row['cnn_call']} (P(reduced) {row['cnn_p_mean']:.2f} ± "
        f"{row['cnn_p_sd']:.2f}, {row['cnn_votes']} models reduced{flag}; {row['cnn_reason']}); "
        f"{sbrs}{how}; {row['seconds']:.1f} s"
    )
