"""The Snakemake report: tables as HTML pages, and the whole report built from the small run."""

from __future__ import annotations

import base64
import json
import re

import pandas as pd
import pytest
from conftest import snakemake

from datspect.errors import InputError
from datspect.report.html_tables import table_html

#: Every figure of the small run: (path, report category).
FIGURES = {
    "results/figures/accuracy.png": "Results",
    "results/figures/roc.png": "Results",
    "results/figures/confusion.png": "Results",
    "results/figures/independent.png": "Independent cohort",
    "results/figures/sbr_distributions.png": "SBR",
    "results/figures/sbr_distributions_hv.png": "SBR",
    "results/figures/normalization_qc.png": "Quality control",
    "results/figures/qc_mosaic_ppmi.png": "Quality control",
    "results/figures/qc_mosaic_clinical.png": "Quality control",
    "results/figures/training_curves.png": "CNN",
    "results/figures/reliability.png": "Calibration",
    "results/figures/robustness.png": "Robustness",
}
#: Every table shown in the report: its HTML page and the TSV it renders.
TABLES = {
    f"results/report/{name}.html": f"results/metrics/{name}.tsv"
    for name in ("summary", "paired_tests", "robustness")
}


def test_table_html_formats_and_escapes():
    table = pd.DataFrame(
        {
            "method": ["sbr_aal", "<cnn>"],
            "split": [0, 1],
            "accuracy": [0.95555, float("nan")],
            "p_ttest": [0.000123456, 0.5],
        }
    )
    page = table_html(table, "Title & more", note="from x.tsv")
    assert page.startswith("<!DOCTYPE html>") and "<h3>Title &amp; more</h3>" in page
    assert '<td class="text">&lt;cnn&gt;</td>' in page  # text escaped and left-aligned
    assert "<td>0.956</td>" in page and "<td>–</td>" in page  # 3 decimals, NaN as a dash
    assert "<td>0.00012</td>" in page  # p-values in 2 significant digits
    assert page.count("<tr>") == 3 and "2 rows." in page
    with pytest.raises(InputError, match="no columns"):
        table_html(pd.DataFrame(), "empty")


def _report_data(html: str, name: str) -> dict:
    """A JSON object the report embeds as ``var <name> = {...};``."""
    match = re.search(rf"var {name} = (\{{.*?\}});\s*\n", html)
    assert match, f"no '{name}' object in the report"
    return json.loads(match.group(1))


def _decoded(entry: dict) -> bytes:
    return base64.b64decode(entry["data_uri"].split("base64,", 1)[1])


@pytest.mark.workflow
def test_report_shows_every_figure_and_table(small_run):
    snakemake("--report", "report.html", workdir=small_run)  # as the README: relative to DIR
    out = small_run / "report.html"
    html = out.read_text(encoding="utf-8")
    results = _report_data(html, "results")
    categories = _report_data(html, "categories")
    in_category = {
        path: category
        for category, subcategories in categories.items()
        for paths in subcategories.values()
        for path in paths
    }
    for path, category in FIGURES.items():
        assert path in results, f"{path} is not in the report"
        entry = results[path]
        assert entry["mime_type"] == "image/png" and entry["caption"].strip(), path
        data = _decoded(entry)
        assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 20_000, path
        assert data == (small_run / path).read_bytes(), f"{path}: embedded file differs"
        assert in_category[path] == category, path
    for path, tsv in TABLES.items():
        entry = results[path]
        assert entry["mime_type"] == "text/html" and in_category[path] == "Tables"
        assert tsv in entry["caption"], f"{path}: the caption should name {tsv}"
        page = _decoded(entry).decode("utf-8")
        assert page.count("<tr>") == len(pd.read_csv(small_run / tsv, sep="\t")) + 1, path
    # the captions' Jinja placeholders were filled from the config
    assert "{{" not in "".join(entry["caption"] for entry in results.values())
