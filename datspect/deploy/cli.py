"""The ``classify`` console command: argument parsing around :func:`.classify.run`."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from datspect.errors import InputError

DESCRIPTION = """\
Classify DaTscan SPECT scans with a model exported by the workflow (results/model).
Each scan is normalized to the exported template, checked (normalization QC), measured
(AAL and hottest-voxels putamen SBR against the mixed-setting cutoffs) and scored by the
CNN ensemble (P(reduced) as mean ± SD over the models; flagged when the models fall on both
sides of 0.5). Writes one report page per scan (PNG) and classification.tsv into --out.
"""


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="classify", description=DESCRIPTION)
    p.add_argument(
        "scans", nargs="+", metavar="SCAN", help="NIfTI file, DICOM file or DICOM folder"
    )
    p.add_argument(
        "--model", required=True, type=Path, help="export folder (results/model of a run)"
    )
    p.add_argument("--out", required=True, type=Path, help="output folder (created if missing)")
    p.add_argument(
        "--threads", type=int, default=1, help="CPU threads for registration and the CNN"
    )
    return p


def main(argv=None) -> int:
    args = parser().parse_args(argv)
    if args.threads < 1:
        parser().error("--threads must be at least 1")
    import torch

    from datspect.deploy import classify

    torch.set_num_threads(args.threads)
    try:
        classify.run(args.scans, model_dir=args.model, out_dir=args.out, threads=args.threads)
    except InputError as err:
        print(f"classify: error: {err}", file=sys.stderr)
        return 2
    print(f"wrote {args.out / classify.TABLE}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
