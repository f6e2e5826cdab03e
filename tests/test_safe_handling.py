"""Safe handling of user files: no code runs from data, and shell commands quote their paths.

The scan reads every Python, Snakemake and profile file of the repository; a pattern found in a
comment counts as well, so the rules here hold for documentation code too.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from conftest import REPO

SOURCES = sorted(
    p
    for pattern in ("**/*.py", "**/*.smk", "Snakefile", "profiles/**/*.yaml")
    for p in REPO.glob(pattern)
    if not ({".venv", ".git", "work", ".snakemake"} & set(p.relative_to(REPO).parts))
    and p != Path(__file__).resolve()
)


def _calls(text: str, name: str) -> list[str]:
    """The argument text of every call of ``name(...)`` (balanced parentheses)."""
    calls = []
    for match in re.finditer(rf"(?<![\w.]){re.escape(name)}\(", text):
        depth, i = 1, match.end()
        while depth and i < len(text):
            depth += {"(": 1, ")": -1}.get(text[i], 0)
            i += 1
        calls.append(text[match.end() : i - 1])
    return calls


def _shell_commands(text: str) -> list[str]:
    """The command strings of ``shell:`` directives (one or more string literals)."""
    commands = []
    for match in re.finditer(r"^\s*shell:\s*((?:[rf]*\"(?:[^\"\\]|\\.)*\"\s*)+)", text, re.M):
        commands.append(match.group(1))
    return commands


def violations(path: Path) -> list[str]:
    text = path.read_text(encoding="utf-8")
    found = []
    if re.search(r"\bimport (pickle|dill|shelve|marshal|joblib)\b|\bread_pickle\(", text):
        found.append("pickle-style deserialisation")
    if re.search(r"allow_pickle\s*=\s*True", text):
        found.append("np.load(allow_pickle=True)")
    if re.search(r"(?<![\w.])(eval|exec)\(", text):
        found.append("eval()/exec()")
    if re.search(r"yaml\.(unsafe_load|full_load|load_all)\(|yaml\.(Unsafe|Full)?Loader\b", text):
        found.append("an unsafe YAML loader")
    found += [
        f"yaml.load({args}) without SafeLoader"
        for args in _calls(text, "yaml.load")
        if "SafeLoader" not in args
    ]
    found += [
        f"torch.load({args}) without weights_only=True"
        for args in _calls(text, "torch.load")
        if not re.search(r"weights_only\s*=\s*True", args)
    ]
    for command in _shell_commands(text):
        for ref in re.findall(r"\{+((?:input|output|log|params)(?:\.\w+|\[[^\]]+\])?)\}", command):
            found.append(f"shell: unquoted {{{ref}}} (write {{{ref}:q}})")
    return found


def test_scan_covers_the_code():
    names = {p.relative_to(REPO).as_posix() for p in SOURCES}
    assert {
        "Snakefile",
        "rules/common.smk",
        "datspect/workflow/config_checks.py",
        "bench/job_overhead.py",
    } <= names


@pytest.mark.parametrize("path", SOURCES, ids=lambda p: p.relative_to(REPO).as_posix())
def test_no_unsafe_loading_or_unquoted_shell_paths(path):
    assert violations(path) == []


@pytest.mark.parametrize(
    "code, problem",
    [
        ("import pickle\n", "pickle"),
        ("x = np.load(f, allow_pickle=True)\n", "allow_pickle"),
        ("value = eval(text)\n", "eval"),
        ("data = yaml.load(handle)\n", "SafeLoader"),
        ("data = yaml.load(handle, Loader=yaml.Loader)\n", "unsafe YAML"),
        ("state = torch.load(path, map_location='cpu')\n", "weights_only"),
        ("state = torch.load(path, weights_only=False)\n", "weights_only"),
        ('rule a:\n    shell:\n        "gzip -c {input} > {output.gz:q}"\n', "{input}"),
        ('rule a:\n    shell: "cp {input:q} {output[0]}"\n', "{output[0]}"),
    ],
)
def test_scan_finds_each_pattern(tmp_path, code, problem):
    path = tmp_path / "sample.py"
    path.write_text(code)
    assert any(problem in v for v in violations(path)), violations(path)


@pytest.mark.parametrize(
    "code",
    [
        "model.eval()\n",
        "data = yaml.safe_load(handle)\n",
        "data = yaml.load(handle, Loader=yaml.SafeLoader)\n",
        "state = torch.load(path, map_location=device, weights_only=True)\n",
        'rule a:\n    shell:\n        "gzip -c {input:q} > {output.gz:q} 2> {log:q}"\n',
    ],
)
def test_scan_accepts_safe_code(tmp_path, code):
    path = tmp_path / "sample.py"
    path.write_text(code)
    assert violations(path) == []
