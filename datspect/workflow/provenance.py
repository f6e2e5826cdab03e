"""Which code produced a file: a hash of a module's source and of every datspect module it uses.

Snakemake's between-workflow cache keys a job on its params, its inputs and its script or shell
text, but not on the Python code a ``run:`` block calls. Rules that are cached therefore carry
this hash as a parameter, so that a change to the code they use is a new cache entry (and, by
the params rerun trigger, a rerun) rather than a stale hit.
"""

from __future__ import annotations

import ast
import functools
import hashlib
from pathlib import Path

PACKAGE = "datspect"
ROOT = Path(__file__).resolve().parents[2]  # the folder holding the datspect package


def _module_file(name: str) -> Path | None:
    """The source file of a datspect module (found without importing it), or None."""
    base = ROOT.joinpath(*name.split("."))
    for path in (base.with_suffix(".py"), base / "__init__.py"):
        if path.is_file():
            return path
    return None


def _imported_modules(path: Path) -> set[str]:
    """datspect modules imported by the file at ``path`` (absolute imports, any form)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names if a.name.split(".")[0] == PACKAGE}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            if node.module.split(".")[0] == PACKAGE:
                found.add(node.module)
                # `from datspect import smooth` imports the submodule datspect.preprocess.smooth
                found |= {f"{node.module}.{a.name}" for a in node.names}
    return {m for m in found if _module_file(m) is not None}


@functools.cache
def source_hash(*modules: str) -> str:
    """sha256 over the sources of ``modules`` and all datspect modules they import, recursively."""
    seen: dict[str, Path] = {}
    todo = list(modules)
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        path = _module_file(name)
        if path is None:
            raise ValueError(f"no module named {name!r}")
        seen[name] = path
        todo.extend(_imported_modules(path))
    digest = hashlib.sha256()
    for name in sorted(seen):
        digest.update(name.encode())
        digest.update(seen[name].read_bytes())
    return digest.hexdigest()[:16]


@functools.cache
def _step_sources() -> dict[str, str]:
    """Source text of each function of :mod:`.steps`, read without importing it (its
    image libraries would slow down every dry run)."""
    text = _module_file("datspect.workflow.steps").read_text(encoding="utf-8")
    return {
        node.name: ast.get_source_segment(text, node)
        for node in ast.parse(text).body
        if isinstance(node, ast.FunctionDef)
    }


def step_hash(step: str, *modules: str) -> str:
    """Hash of one per-image step of :mod:`.steps` and the modules doing its work."""
    digest = hashlib.sha256(_step_sources()[step].encode())
    digest.update(source_hash(*modules).encode())
    return digest.hexdigest()[:16]
