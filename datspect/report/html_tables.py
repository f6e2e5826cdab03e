"""Result tables as small self-contained HTML pages for the Snakemake report.

The report shows HTML inline but offers other text files (a ``.tsv``) only as a download, so
each summary table is rendered once more as HTML beside its TSV.
"""

from __future__ import annotations

import html

import numpy as np
import pandas as pd

from datspect.errors import InputError

_STYLE = """
body { font-family: sans-serif; font-size: 13px; margin: 12px; }
table { border-collapse: collapse; }
th, td { padding: 3px 8px; text-align: right; border-bottom: 1px solid #ddd; }
th { background: #f2f2f2; position: sticky; top: 0; }
td.text, th.text { text-align: left; }
p.note { color: #444; max-width: 60em; }
"""


def _format(column: pd.Series, name: str) -> list[str]:
    """p-values in 2 significant digits, other floats with 3 decimals, the rest as text."""
    if pd.api.types.is_float_dtype(column):
        spec = "{:.2g}" if name.startswith("p_") else "{:.3f}"
        return ["–" if np.isnan(v) else spec.format(v) for v in column]
    return [html.escape(str(v)) for v in column]


def table_html(table: pd.DataFrame, title: str, *, note: str = "") -> str:
    """One HTML page with ``title``, an optional ``note`` and the whole table.

    Parameters
    ----------
    table : pandas.DataFrame
        Any table; float columns are rounded for reading (the TSV keeps the full values).
    title : str
        Heading of the page.
    note : str
        A sentence under the heading (e.g. where the TSV lies).
    """
    if table.columns.empty:
        raise InputError(f"{title}: the table has no columns; rerun the rule that writes it")
    text_cols = {c for c in table.columns if not pd.api.types.is_numeric_dtype(table[c])}
    cells = {c: _format(table[c], str(c)) for c in table.columns}

    def cls(column) -> str:
        return ' class="text"' if column in text_cols else ""

    header = "".join(f"<th{cls(c)}>{html.escape(str(c))}</th>" for c in table.columns)
    body = "\n".join(
        "<tr>" + "".join(f"<td{cls(c)}>{cells[c][i]}</td>" for c in table.columns) + "</tr>"
        for i in range(len(table))
    )
    note_html = f'<p class="note">{html.escape(note)}</p>' if note else ""
    return (
        '<!DOCTYPE html>\n<html><head><meta charset="utf-8">'
        f"<title>{html.escape(title)}</title><style>{_STYLE}</style></head><body>\n"
        f"<h3>{html.escape(title)}</h3>{note_html}\n"
        f"<table><thead><tr>{header}</tr></thead><tbody>\n{body}\n</tbody></table>\n"
        f'<p class="note">{len(table)} rows.</p></body></html>\n'
    )
