"""Reading and writing the workflow's TSV tables (atomically, with stable float formatting), and
checks of their contract columns and cohorts."""

from __future__ import annotations

from collections.abc import Sequence

import pandas as pd

from datspect.errors import InputError
from datspect.io.imageio import atomic_output


def read_tsv(path) -> pd.DataFrame:
    return pd.read_csv(path, sep="\t")


def write_tsv(frame: pd.DataFrame, path) -> None:
    with atomic_output(path) as tmp:
        frame.to_csv(tmp, sep="\t", index=False, float_format="%.6g")


def concat_tsv(paths) -> pd.DataFrame:
    return pd.concat([read_tsv(p) for p in paths], ignore_index=True)


def require_columns(table: pd.DataFrame, columns: Sequence[str], name: str) -> None:
    """Raise :class:`~datspect.errors.InputError` naming the ``columns`` that ``table`` lacks."""
    missing = [c for c in columns if c not in table.columns]
    if missing:
        raise InputError(
            f"{name}: missing column(s) {', '.join(missing)}; expected at least "
            f"{', '.join(columns)} (see the data contracts in the design notes)"
        )


def cohort_rows(table: pd.DataFrame, cohort: str, name: str) -> pd.DataFrame:
    """The rows of one cohort; an :class:`~datspect.errors.InputError` when it has none."""
    rows = table[table["cohort"] == cohort]
    if rows.empty:
        known = ", ".join(sorted(map(str, table["cohort"].unique()))) or "none"
        raise InputError(f"{name}: no rows for cohort {cohort!r}; cohorts in the table: {known}")
    return rows
