"""Same config, same tables: two clean runs in different folders agree byte for byte."""

from __future__ import annotations

import difflib
import os
import shutil

import pytest
from conftest import snakemake

TABLES = ("results/metrics/per_split.tsv", "results/metrics/summary.tsv", "results/sbr/sbr.tsv")


@pytest.mark.workflow
def test_two_clean_runs_give_identical_tables(small_run, tmp_path_factory):
    other = tmp_path_factory.mktemp("another_clean_run")
    try:
        snakemake("--quiet", "--cores", str(os.cpu_count() or 2), *TABLES, workdir=other)
        for table in TABLES:
            first, second = (small_run / table).read_text(), (other / table).read_text()
            diff = "".join(
                difflib.unified_diff(first.splitlines(True), second.splitlines(True), n=0)
            )
            assert first == second, f"{table} differs between two clean runs:\n{diff[:3000]}"
            assert (small_run / table).read_bytes() == (other / table).read_bytes()
    finally:
        shutil.rmtree(other, ignore_errors=True)
