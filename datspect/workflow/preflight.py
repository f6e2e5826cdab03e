"""Checks of the jobs a run will start, made after Snakemake planned them and before any starts.

Snakemake removes a job's outputs just before the job runs, so a job that fails on bad input has
already deleted the previous, good outputs (a trained model, the exported model folder, a
figure).  What can be known before any job starts is checked here, once the plan (the jobs that
will run) exists: the Snakefile's ``onstart`` calls :func:`check_planned_jobs`.  Snakemake calls
``onstart`` for a real run only, not for ``--dry-run`` nor with ``--no-hooks``.

* **Device**: a job whose ``device`` parameter is ``cuda`` (``train_cnn``, config key
  ``cnn.device``), run on this machine, needs torch to see a CUDA device.  On a cluster the jobs
  run elsewhere, and their own check (:func:`datspect.cnn.train.resolve_device`) stays.
* **Checkpoints**: every CNN checkpoint (``*.pt``) a job will read, that exists and that no
  planned job writes, is checked against its JSON sidecar (valid JSON, the sha256 it records):
  hashing only, 0.26 s for 30 default-size (11.5 MB) checkpoints read from the page cache.  A
  checkpoint whose sidecar matches but whose content is not a state_dict of the sidecar's
  architecture (both files forged) is found only when a job loads it: one message, but that
  job's outputs are gone.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from datspect.errors import InputError
from datspect.io.checksum import retrain_fix, verified_sidecar
from datspect.workflow.config_checks import locate_key

CHECKPOINT_SUFFIX = ".pt"


@dataclass(frozen=True)
class PlannedJob:
    """What the checks need of a job Snakemake will run."""

    rule: str
    inputs: tuple[str, ...] = ()
    outputs: tuple[str, ...] = ()
    params: dict = field(default_factory=dict)


def planned_jobs(dag) -> list[PlannedJob]:
    """The jobs Snakemake's ``dag`` will run."""
    return [
        PlannedJob(
            rule=job.rule.name,
            inputs=tuple(map(str, job.input)),
            outputs=tuple(map(str, job.output)),
            params=dict(job.params.items()),
        )
        for job in dag.needrun_jobs()
    ]


def check_planned_jobs(workflow, config: dict, config_files=()) -> None:
    """The Snakefile's ``onstart`` call: :func:`check_jobs` on the jobs ``workflow`` will run
    (none for ``--touch``, which runs no job and removes nothing)."""
    if workflow.touch:
        return
    check_jobs(
        planned_jobs(workflow.dag),
        config_files=config_files,
        local=bool(workflow.local_exec),
    )


def check_jobs(jobs: Iterable[PlannedJob], *, config_files=(), local: bool = True) -> None:
    """Stop with one :class:`InputError` before any of ``jobs`` starts if one would fail on its
    device or on a CNN checkpoint it reads (module notes).

    Parameters
    ----------
    jobs : iterable of PlannedJob
        The jobs that will run.
    config_files : sequence of str
        The config files in Snakemake's merge order (a message names the one setting the key).
    local : bool
        Whether the jobs run on this machine.
    """
    jobs = list(jobs)
    if local:
        check_device(jobs, config_files)
    check_checkpoints(jobs)


def check_device(jobs: list[PlannedJob], config_files=()) -> None:
    """A job asking for ``cuda`` needs a CUDA device torch sees on this machine."""
    cuda = [job for job in jobs if job.params.get("device") == "cuda"]
    if not cuda:
        return
    import torch  # only here: two seconds of planning otherwise

    if torch.cuda.is_available():
        return
    where = locate_key(config_files, ["cnn", "device"]) or "config"
    rules = sorted({job.rule for job in cuda})
    raise InputError(
        f"{where}: key 'cnn.device' is 'cuda' but torch on this machine sees no CUDA device, so "
        f"{len(cuda)} {'/'.join(rules)} job(s) would fail after Snakemake removed their previous "
        "outputs; set cnn.device: auto (CUDA when available, else CPU) or cpu, or run where "
        "torch sees a GPU (a cluster profile runs the jobs on GPU nodes)"
    )


def checkpoints_to_check(jobs: list[PlannedJob]) -> dict[str, list[str]]:
    """Existing checkpoints the jobs read that none of them writes: ``{path: reading rules}``."""
    written = {out for job in jobs for out in job.outputs}
    readers: dict[str, set[str]] = {}
    for job in jobs:
        for path in job.inputs:
            if path.endswith(CHECKPOINT_SUFFIX) and path not in written:
                readers.setdefault(path, set()).add(job.rule)
    return {p: sorted(rules) for p, rules in sorted(readers.items()) if Path(p).is_file()}


def check_checkpoints(jobs: list[PlannedJob]) -> None:
    """Each checkpoint of :func:`checkpoints_to_check` against its sidecar (sha256 only)."""
    for path, rules in checkpoints_to_check(jobs).items():
        kept = f"no job has started, so the outputs of the {', '.join(rules)} jobs are kept"
        verified_sidecar(path, f"{retrain_fix(path)}; {kept}")
