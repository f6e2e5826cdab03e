"""Side-by-side stage table of `bench/e2e.py` runs: before and after a change.

Each group's figure is the median over its runs (`bench/e2e.py` writes one `e2e.json` per run;
keep each under its own name). Usage:

    .venv/bin/python bench/e2e_compare.py --before b1.json b2.json --after a1.json a2.json
"""

from __future__ import annotations

import argparse
import json
import statistics
from pathlib import Path

import pandas as pd


def load(paths) -> list[dict]:
    return [json.loads(Path(p).read_text()) for p in paths]


def stage_totals(runs: list[dict]) -> pd.DataFrame:
    """Jobs and summed job seconds per rule, the median over ``runs``."""
    frames = [pd.DataFrame(r["stages"]).set_index("rule") for r in runs]
    table = pd.concat(frames, keys=range(len(frames)))
    return table.groupby(level="rule")[["jobs", "total_s"]].median()


def _has(runs, key) -> bool:
    return all(key in r for r in runs)


def _median(runs, key) -> float:
    values = [r[key] for r in runs if key in r]
    return statistics.median(values if not isinstance(values[0], list) else sum(values, []))


def compare(before: list[dict], after: list[dict]) -> str:
    old, new = stage_totals(before), stage_totals(after)
    table = old.add_suffix("_before").join(new.add_suffix("_after"), how="outer").fillna(0)
    table = table.sort_values("total_s_before", ascending=False)
    lines = [
        f"whole run: {_median(before, 'run_s') / 60:.1f} min before ({len(before)} runs), "
        f"{_median(after, 'run_s') / 60:.1f} min after ({len(after)} runs): ratio "
        f"{_median(before, 'run_s') / _median(after, 'run_s'):.2f}",
        "CPU of the run (user + system, Snakemake and all jobs): "
        + ", ".join(
            f"{_median(runs, 'run_cpu_s'):,.0f} s {name}"
            if _has(runs, "run_cpu_s")
            else f"not recorded {name}"
            for name, runs in (("before", before), ("after", after))
        ),
        f"no-change dry run: {_median(before, 'no_change_dry_run_s'):.1f} s before, "
        f"{_median(after, 'no_change_dry_run_s'):.1f} s after",
        "",
        "| stage | jobs | total s before | total s after |",
        "|---|---|---|---|",
    ]
    for rule, row in table.iterrows():
        lines.append(
            f"| {rule} | {int(row['jobs_after'] or row['jobs_before'])} | "
            f"{row['total_s_before']:,.0f} | {row['total_s_after']:,.0f} |"
        )
    sums = table[["total_s_before", "total_s_after"]].sum()
    lines.append(f"| all jobs | | {sums.iloc[0]:,.0f} | {sums.iloc[1]:,.0f} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--before", nargs="+", required=True)
    parser.add_argument("--after", nargs="+", required=True)
    args = parser.parse_args()
    print(compare(load(args.before), load(args.after)))


if __name__ == "__main__":
    main()
