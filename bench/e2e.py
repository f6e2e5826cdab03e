"""End-to-end time budget of the default workflow, per stage, from Snakemake's benchmark files.

Runs, in a fresh working directory:
  1. the whole default workflow (`--cores N`, default 2) and the HTML report, timed;
  2. a no-change dry run, several times (the median is the "rerun plans in <= 10 s" figure);
  3. the dry run of a cohort 10x the default (both cohorts' subject counts times 10), timed;
then sums Snakemake's own job records (`.snakemake/metadata/`: rule, start and end time of the
job that wrote each output) per rule into a stage table: jobs, summed job seconds, median
seconds per job. (Not `benchmark:` files: Snakemake forbids them on the rules marked for the
between-workflow cache, which are the expensive per-image ones.)
Usage: .venv/bin/python bench/e2e.py [--workdir bench/out/e2e] [--cores 2] [--skip-run]
Writes bench/out/e2e.md and bench/out/e2e.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd
import yaml

REPO = Path(__file__).resolve().parents[1]
SNAKEMAKE = str(Path(sys.executable).with_name("snakemake"))


def snakemake(workdir: Path, *args: str, configfiles=(REPO / "config.yaml",), own_cpu=None):
    """Run Snakemake from the repository; return wall seconds (fails loudly). With a dict as
    ``own_cpu``, its ``s`` receives the CPU seconds of the Snakemake process itself (all its
    threads, not its worker pool or jobs), read from /proc every half second while it runs."""
    cmd = [SNAKEMAKE, "--directory", str(workdir), "--configfile", *map(str, configfiles), *args]
    start = time.perf_counter()
    with tempfile.TemporaryFile("w+") as err:
        proc = subprocess.Popen(cmd, cwd=REPO, stdout=subprocess.DEVNULL, stderr=err, text=True)
        while proc.poll() is None:
            if own_cpu is not None:
                own_cpu["s"] = _process_cpu_s(proc.pid, own_cpu.get("s", 0.0))
            time.sleep(0.5)
        if proc.returncode != 0:
            err.seek(0)
            raise SystemExit(f"{' '.join(cmd)} failed:\n{err.read()[-4000:]}")
    return time.perf_counter() - start


def _process_cpu_s(pid: int, last: float) -> float:
    """User + system CPU seconds of process ``pid`` alone (``last`` once it has exited)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (FileNotFoundError, ProcessLookupError):
        return last
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def stage_table(workdir: Path) -> pd.DataFrame:
    """Jobs, summed and median wall seconds per rule from Snakemake's job records."""
    jobs = {}
    for path in (workdir / ".snakemake/metadata").iterdir():
        record = json.loads(path.read_text())
        if record.get("starttime") and record.get("endtime"):
            # the outputs of one job share its hash (their start and end times differ by ms)
            key = (record["rule"], record["job_hash"])
            jobs[key] = max(jobs.get(key, 0.0), record["endtime"] - record["starttime"])
    jobs = pd.DataFrame([{"rule": k[0], "s": v} for k, v in jobs.items()])
    table = jobs.groupby("rule")["s"].agg(jobs="count", total_s="sum", median_s="median")
    return table.sort_values("total_s", ascending=False).round(2).reset_index()


def tenfold_config(tmp: Path) -> Path:
    """The default config with every simulated cohort ten times larger."""
    config = yaml.safe_load((REPO / "config.yaml").read_text())
    for cohort in config["cohorts"].values():
        if cohort["source"] == "simulate":
            cohort["simulate"]["n_normal"] *= 10
            cohort["simulate"]["n_reduced"] *= 10
    path = tmp / "tenfold.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workdir", type=Path, default=REPO / "bench/out/e2e")
    parser.add_argument("--cores", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--skip-run", action="store_true", help="reuse a finished workdir")
    args = parser.parse_args()
    out = REPO / "bench/out"
    out.mkdir(parents=True, exist_ok=True)
    result = {
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, {platform.python_version()}",
        "date": time.strftime("%Y-%m-%d %H:%M"),
        "cores": args.cores,
    }
    if not args.skip_run:
        if args.workdir.exists() and any(args.workdir.iterdir()):
            raise SystemExit(f"{args.workdir} is not empty: the run must start from scratch")
        cpu = resource.getrusage(resource.RUSAGE_CHILDREN)
        own = {}
        result["run_s"] = snakemake(
            args.workdir, "--cores", str(args.cores), "--quiet", own_cpu=own
        )
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        # Snakemake, its worker pool and every job process: user + system CPU seconds
        result["run_cpu_s"] = round(
            after.ru_utime + after.ru_stime - cpu.ru_utime - cpu.ru_stime, 1
        )
        # of which the Snakemake process itself (scheduling, job records, its threads)
        result["snakemake_process_cpu_s"] = round(own.get("s", float("nan")), 1)
        result["report_s"] = snakemake(args.workdir, "--report", "report.html")
    result["no_change_dry_run_s"] = [
        snakemake(args.workdir, "--dry-run", "--quiet") for _ in range(args.repeats)
    ]
    with tempfile.TemporaryDirectory() as tmp:
        config = tenfold_config(Path(tmp))
        result["tenfold_dry_run_s"] = snakemake(
            Path(tmp) / "w", "--dry-run", "--quiet", configfiles=(config,)
        )
    stages = stage_table(args.workdir)
    result["stages"] = stages.to_dict(orient="records")
    (out / "e2e.json").write_text(json.dumps(result, indent=1) + "\n")
    lines = [
        f"# End-to-end run ({result['machine']}, --cores {args.cores}, {result['date']})",
        "",
        f"- whole run: {result.get('run_s', float('nan')) / 60:.1f} min, "
        f"{result.get('run_cpu_s', float('nan')):.0f} CPU s (Snakemake's own process "
        f"{result.get('snakemake_process_cpu_s', float('nan')):.0f}); "
        f"report: {result.get('report_s', float('nan')):.0f} s",
        f"- no-change dry run: median {statistics.median(result['no_change_dry_run_s']):.1f} s "
        f"of {args.repeats}",
        f"- dry run of the 10x cohort: {result['tenfold_dry_run_s']:.0f} s",
        "",
        stages.to_markdown(index=False),
    ]
    (out / "e2e.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
