"""Code hashes that key the between-workflow cache of run: rules."""

from __future__ import annotations

import inspect

import pytest

from datspect.workflow import provenance, steps


def test_step_hash_reads_each_step_function_without_importing_steps():
    # the parsed source is exactly what inspect sees in the imported module
    for name in ("simulate_subject", "smooth", "normalize"):
        assert provenance._step_sources()[name] == inspect.getsource(getattr(steps, name)).strip()
    assert provenance.step_hash("smooth", "datspect.preprocess.smooth") != provenance.step_hash(
        "normalize", "datspect.preprocess.smooth"
    )
    assert provenance.step_hash("smooth", "datspect.preprocess.smooth") == provenance.step_hash(
        "smooth", "datspect.preprocess.smooth"
    )


def test_source_hash_follows_imports_and_rejects_unknown_modules():
    # preprocess.smooth imports nothing else of the package; workflow.steps imports it
    assert provenance.source_hash("datspect.workflow.steps") != provenance.source_hash(
        "datspect.preprocess.smooth"
    )
    with pytest.raises(ValueError, match="no module named 'datspect.nope'"):
        provenance.source_hash("datspect.nope")
