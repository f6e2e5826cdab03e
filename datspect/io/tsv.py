"""Reading and writing the workflow's TSV tables (atomically, with stable float formatting)."""

from __future__ import annotations

import pandas as pd

from datspect.io.imageio import atomic_output


def read_tsv(path) -> pd.DataFrame:
    return pd.read_csv(path, sep="\t")


def write_tsv(frame: pd.DataFrame, path) -> None:
    with atomic_output(path) as tmp:
        frame.to_csv(tmp, sep="\t", index=False, float_format="%.6g")


def concat_tsv(paths) -> pd.DataFrame:
    return pd.concat([read_tsv(p) for p in paths], ignore_index=True)
