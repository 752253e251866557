"""Every code block of README.md and docs/*.md runs here, so a documented example cannot break unnoticed.

Python blocks run in order, one namespace per file (a later block may use an earlier one's names),
in a temporary folder. Any other block must be preceded by the marker
``<!-- not run: REASON; tested by tests/FILE.py::TEST -->`` naming the test that runs a small
equivalent (a shell command that starts the main job, a server or several GPUs); a block that is
not code at all (a web-server configuration) may give only the reason.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DOCS = ["README.md", *sorted(str(p.relative_to(ROOT)) for p in (ROOT / "docs").glob("*.md"))]
_FENCE = re.compile(r"^```(\w*)\n(.*?)^```", re.S | re.M)
_MARK = re.compile(r"<!-- not run: (?P<why>[^;>]+?)(?:; tested by (?P<test>tests/[\w/]+\.py)::(?P<func>\w+))? -->$")
_CODE = ("bash", "sh", "shell", "console", "python", "")


def blocks(name: str) -> list[tuple[int, str, str, re.Match | None]]:
    """``(line, language, body, marker or None)`` of every fenced block of ``name``."""
    text = (ROOT / name).read_text(encoding="utf-8")
    found = []
    for m in _FENCE.finditer(text):
        line = text.count("\n", 0, m.start()) + 1
        before = text[:m.start()].rstrip("\n").rsplit("\n", 1)[-1]
        found.append((line, m.group(1), m.group(2), _MARK.match(before)))
    return found


@pytest.mark.parametrize("name", DOCS)
def test_blocks_not_run_are_marked_and_name_an_existing_test(name):
    for line, lang, _, mark in blocks(name):
        if lang == "python" and mark is None:
            continue
        where = f"{name}:{line} ({lang or 'no language'})"
        assert mark is not None, f"{where} is neither Python nor marked <!-- not run: ...; tested by ... -->"
        if lang in _CODE:
            assert mark["test"], f"{where} is code: its marker must name the test that runs a small equivalent"
        if mark["test"]:
            source = (ROOT / mark["test"]).read_text(encoding="utf-8")
            assert re.search(rf"^def {mark['func']}\(", source, re.M), f"{where}: no {mark['test']}::{mark['func']}"


@pytest.mark.parametrize("name", DOCS)
def test_python_blocks_run(name, tmp_path, monkeypatch, single_thread):
    code = [(line, body) for line, lang, body, mark in blocks(name) if lang == "python" and mark is None]
    if not code:
        pytest.skip(f"{name} has no Python blocks")
    monkeypatch.chdir(tmp_path)
    namespace: dict = {"__name__": "__doc_example__"}
    for line, body in code:
        exec(compile(body, f"{name}:{line}", "exec"), namespace)  # noqa: S102  (our own documentation)
