"""Every case of the bad-input catalogue under a memory cap: none may need more than 2 GB.

Collects the cases of every ``tests/test_bad_input*.py`` (their ``CASES``, or ``CATALOGUE`` for
the first catalogue) by import, and runs each in its own process with the address space capped
(``RLIMIT_AS``, as ``ulimit -v``).  Each child builds the case in a temporary folder and checks
it the way the tests do (one clear ``InputError``); the parent reports the child's peak resident
memory (``os.wait4``) and whether it passed.  A bench, not a test: it takes about a minute.

    python bench/bad_input_memory.py [--cap-gb 2] [--only SUBSTRING]

The cap is on virtual memory, which counts every library mapped by the imports (numpy, scipy,
SimpleITK, pydicom, nibabel; torch where a case imports it), not only the data: a case that
fails with ``MemoryError`` only under the cap shows where it is too tight.  A first child that
imports the test modules and runs nothing gives that baseline.
"""

from __future__ import annotations

import argparse
import importlib
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
TESTS = REPO / "tests"
BASELINE = "(imports only)"


def modules() -> list[str]:
    return sorted(p.stem for p in TESTS.glob("test_bad_input*.py"))


def cases(module_name: str) -> list:
    module = importlib.import_module(module_name)
    return list(getattr(module, "CASES", None) or getattr(module, "CATALOGUE", []))


def run_one(module_name: str, index: int) -> None:
    """In the child: build case ``index`` of ``module_name`` and check it as the tests do."""
    from test_bad_input import assert_one_clear_message

    case = cases(module_name)[index]
    with tempfile.TemporaryDirectory() as folder:
        assert_one_clear_message(case, Path(folder))


def child(module_name: str, index: int, cap_bytes: int) -> tuple[str, float, float]:
    """Run one case capped; return (outcome, peak RSS in MiB, seconds)."""

    def limit():
        resource.setrlimit(resource.RLIMIT_AS, (cap_bytes, cap_bytes))

    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), str(TESTS)])}
    start = time.perf_counter()
    proc = subprocess.Popen(
        [sys.executable, __file__, "--child", module_name, str(index)],
        preexec_fn=limit,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        env=env,
        cwd=REPO,
    )
    output = proc.stdout.read().decode(errors="replace")
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    seconds = time.perf_counter() - start
    peak_mib = usage.ru_maxrss / 1024  # kB on Linux
    if proc.returncode == 0:
        return "ok", peak_mib, seconds
    last = [line for line in output.splitlines() if line.strip()][-1:] or ["(no output)"]
    return f"FAILED rc={proc.returncode}: {last[0][:160]}", peak_mib, seconds


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cap-gb", type=float, default=2.0, help="RLIMIT_AS per case (GiB)")
    parser.add_argument("--only", default="", help="run the cases whose name contains this")
    parser.add_argument("--child", nargs=2, metavar=("MODULE", "INDEX"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        if int(args.child[1]) >= 0:
            run_one(args.child[0], int(args.child[1]))
        else:
            list(map(cases, modules()))  # the baseline: every import the cases make
        return 0
    sys.path[:0] = [str(REPO), str(TESTS)]
    cap = int(args.cap_gb * 2**30)
    jobs = [(modules()[0], -1, BASELINE)]
    jobs += [
        (name, i, case.name)
        for name in modules()
        for i, case in enumerate(cases(name))
        if args.only in case.name
    ]
    where = ", ".join(modules())
    print(f"{len(jobs) - 1} cases from {where}, each under RLIMIT_AS {args.cap_gb:g} GiB")
    worst, failed = 0.0, 0
    for module_name, index, name in jobs:
        outcome, peak, seconds = child(module_name, index, cap)
        worst = max(worst, peak) if index >= 0 else worst
        failed += outcome != "ok"
        print(f"{peak:8.0f} MiB {seconds:6.1f} s  {outcome:4}  {module_name}: {name}")
    print(f"largest peak RSS of a case: {worst:.0f} MiB; {failed} of {len(jobs)} runs failed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
