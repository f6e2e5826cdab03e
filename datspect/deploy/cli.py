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

Three input kinds: a native 3D scan (registered); a 3D scan already on the MNI 2 mm grid
(shape 91 x 109 x 91 and the grid's affine: not registered unless --register, still QC'd); a
published-style 2D slab (109 x 91 greyscale PNG, or a one-slice NIfTI as the workflow stores
slabs). A model exported from 3D scans gives a slab the CNN call only (its SBR cutoffs are 3D
SBRs); one exported from slabs measures slab SBRs, of a 3D scan's slab too.
"""


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="classify", description=DESCRIPTION)
    p.add_argument(
        "scans",
        nargs="+",
        metavar="SCAN",
        help="NIfTI file, DICOM file or DICOM folder (3D scan), or PNG / one-slice NIfTI (slab)",
    )
    p.add_argument(
        "--model", required=True, type=Path, help="export folder (results/model of a run)"
    )
    p.add_argument("--out", required=True, type=Path, help="output folder (created if missing)")
    p.add_argument(
        "--threads", type=int, default=1, help="CPU threads for registration and the CNN"
    )
    p.add_argument(
        "--register",
        action="store_true",
        help="register 3D scans on the MNI 2 mm grid too (by default taken as normalized)",
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
        classify.run(
            args.scans,
            model_dir=args.model,
            out_dir=args.out,
            threads=args.threads,
            register_mni=args.register,
        )
    except InputError as err:
        print(f"classify: error: {err}", file=sys.stderr)
        return 2
    print(f"wrote {args.out / classify.TABLE}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
