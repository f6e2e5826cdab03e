"""Classify new scans with an exported model (the logic of the ``classify`` command).

Each scan goes through the workflow's own steps with the workflow's own parameters, read from
the export's manifest: spatial normalization to the exported template
(:func:`datspect.preprocess.register.estimate_from_config`, as the normalize rule) and its QC, the
AAL and
hottest-voxels putamen SBRs compared with the mixed-setting cutoffs, the slab through the CNN
ensemble, and integrated-gradients saliency.  A scan whose normalization fails the QC is
reported with that status and not classified: its SBRs and slab would be measured in the wrong
place.

Decisions, also stated in the manifest:

* **SBR**: reduced if the SBR is below the mean of the ten split cutoffs; ``*_votes`` counts
  the split cutoffs that call the scan reduced.
* **CNN**: P(reduced) as mean ± SD (sample SD, ddof 1) over the models; reduced if the mean is
  >= 0.5.  The models *disagree* when at least one gives P >= 0.5 and at least one P < 0.5.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from datspect.deploy import export
from datspect.errors import InputError
from datspect.features import sbr, slab
from datspect.features.sbr_config import sbr_arguments
from datspect.io import imageio
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
    *(
        f"{method}_{field}"
        for method in SBR_COLUMN
        for field in ("putamen", "putamen_l", "putamen_r", "cutoff", "call", "votes")
    ),
    "cnn_p_mean",
    "cnn_p_sd",
    "cnn_p_min",
    "cnn_p_max",
    "cnn_call",
    "cnn_votes",
    "cnn_disagreement",
]
_SCAN_SUFFIXES = (".nii.gz", ".nii", ".dcm", ".ima")


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
    cut = float(cutoffs.mean())
    return {
        f"{method}_putamen": value,
        f"{method}_putamen_l": float(values[f"{key}_l"]),
        f"{method}_putamen_r": float(values[f"{key}_r"]),
        f"{method}_cutoff": cut,
        f"{method}_call": "reduced" if value < cut else "normal",
        f"{method}_votes": f"{int((value < cutoffs).sum())}/{cutoffs.size}",
    }


def measure_sbr(model: export.ExportedModel, volume: np.ndarray, name: str) -> dict:
    """AAL and HV putamen SBRs with the workflow's parameters, and their calls."""
    cfg = model.config["sbr"]
    aal = sbr.aal_sbr(volume, **sbr_arguments(cfg, "sbr_aal"), name=name)
    hv = sbr.hv_sbr(volume, **sbr_arguments(cfg, "sbr_hv"), name=name)
    return _sbr_fields(model, "sbr_aal", aal) | _sbr_fields(model, "sbr_hv", hv)


def cnn_fields(probabilities: np.ndarray) -> dict:
    """Ensemble summary of the models' P(reduced) (decision and disagreement: module notes)."""
    p = np.asarray(probabilities, dtype=float)
    votes = int((p >= 0.5).sum())
    return {
        "cnn_p_mean": float(p.mean()),
        "cnn_p_sd": float(p.std(ddof=1)) if p.size > 1 else 0.0,
        "cnn_p_min": float(p.min()),
        "cnn_p_max": float(p.max()),
        "cnn_call": "reduced" if p.mean() >= 0.5 else "normal",
        "cnn_votes": f"{votes}/{p.size}",
        "cnn_disagreement": bool(0 < votes < p.size),
    }


def classify_scan(path, model: export.ExportedModel, *, threads: int = 1) -> ScanResult:
    """Normalize, QC, measure and classify one scan.

    Parameters
    ----------
    path : str or Path
        NIfTI file, DICOM file or DICOM folder.
    model : datspect.deploy.export.ExportedModel
        From :func:`datspect.deploy.export.load_model`.
    threads : int
        Registration threads.

    Returns
    -------
    ScanResult
    """
    from datspect.cnn import saliency
    from datspect.cnn.train import predict

    cfg = model.config
    name = str(path)
    img = imageio.load_scan(path)
    native_from_mni = register.estimate_from_config(
        img,
        model.template,
        cfg["preprocess"]["registration"],
        seed=_content_seed(cfg["seed"], img),
        threads=threads,
    )
    mni = register.resample_to_mni(img, native_from_mni)
    qc = register.normalization_qc(
        mni,
        model.template,
        min_correlation=cfg["preprocess"]["qc_min_correlation"],
        native_from_mni=native_from_mni,
    )
    volume = np.asarray(mni.dataobj, dtype=np.float32)
    n_slices, reference = cfg["slab"]["n_slices"], cfg["sbr"]["reference"]
    row = {"scan": name, "status": "classified", "note": "", "qc_correlation": qc["correlation"]}
    if qc["flag"] != "ok":
        # Shown on the page only; a misregistered scan may have no usable reference region.
        slab2d = slab.project_to_slab(volume, n_slices)
        slab2d = slab2d / max(float(slab2d.max()), 1e-12)
        row["status"] = "qc_failed"
        why = (
            "the registration had to mirror the image"
            if qc["flag"] == "reflected"
            else f"correlation with the template {qc['correlation']:.3f} < "
            f"{cfg['preprocess']['qc_min_correlation']} (preprocess.qc_min_correlation)"
        )
        row["note"] = (
            f"normalization QC failed: {why}; "
            "check that the file is a DaTscan SPECT with a correct orientation header"
        )
        return ScanResult(row=row, slab=slab2d)
    slab2d = slab.make_slab(volume, n_slices, reference, name=name)
    row |= measure_sbr(model, volume, name)
    nets = [net for _, net in model.cnns]
    probabilities = np.array([float(predict(net, [slab2d], device="cpu")[0]) for net in nets])
    row |= cnn_fields(probabilities)
    attribution = saliency.ensemble_saliency(nets, slab2d)
    return ScanResult(row=row, slab=slab2d, probabilities=probabilities, saliency=attribution)


def check_scans(scans: Sequence) -> None:
    """Read every scan once, so that a bad file stops the run before any heavy work."""
    if not scans:
        raise InputError("no scans given; list NIfTI files, DICOM files or DICOM folders")
    for scan in scans:
        imageio.load_scan(scan)


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
    log: Callable[[str], None] = print,
) -> pd.DataFrame:
    """Classify ``scans``; write one report page per scan and ``classification.tsv``.

    Everything is checked first (model folder and hashes, output folder, every scan readable),
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
    check_scans(scans)
    out_dir.mkdir(parents=True, exist_ok=True)
    rows = []
    for scan, name in zip(scans, report_names(scans), strict=True):
        start = time.perf_counter()
        result = classify_scan(scan, model, threads=threads)
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
    sbrs = "".join(
        f"{METHOD_NAMES[m]} {row[f'{m}_putamen']:.2f} {row[f'{m}_call']} "
        f"(cutoff {row[f'{m}_cutoff']:.2f}); "
        for m in SBR_COLUMN
    )
    return (
        f"{row['scan']}: CNN {row['cnn_call']} (P(reduced) {row['cnn_p_mean']:.2f} ± "
        f"{row['cnn_p_sd']:.2f}, {row['cnn_votes']} models reduced{flag}); "
        f"{sbrs}{row['seconds']:.1f} s"
    )
