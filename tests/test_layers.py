"""The package's layers: the library (data, models, training, scoring, runs,
explain) never imports a command module (the import-linter contract in
pyproject.toml), and no module imports itself in a cycle."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
CYCLES_TOOL = Path("/work/shared/tools/import_cycles.py")


def _run(args: list[str]) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(REPO / "src")}
    return subprocess.run(args, cwd=REPO, env=env, capture_output=True, text=True, timeout=300)


def test_the_library_never_imports_a_command():
    lint = shutil.which("lint-imports")
    if lint is None:
        pytest.skip("import-linter is not installed (pip install -e .[dev])")
    done = _run([lint, "--config", str(REPO / "pyproject.toml")])
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-2000:]
    assert "1 kept, 0 broken" in done.stdout


def test_the_contract_catches_a_library_module_importing_a_command(tmp_path):
    """The contract can fail: a copy of the package whose data layer imports train is refused."""
    lint = shutil.which("lint-imports")
    if lint is None:
        pytest.skip("import-linter is not installed (pip install -e .[dev])")
    copy = tmp_path / "src"
    shutil.copytree(REPO / "src" / "moa_lit", copy / "moa_lit", ignore=shutil.ignore_patterns("__pycache__"))
    schema = copy / "moa_lit" / "schema.py"
    bad = copy / "moa_lit" / "data" / "bad.py"
    bad.write_text("from moa_lit import train  # noqa: F401\n")
    assert schema.is_file()
    env = {**os.environ, "PYTHONPATH": str(copy)}
    done = subprocess.run([lint, "--config", str(REPO / "pyproject.toml")], cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode != 0 and "BROKEN" in done.stdout.upper(), done.stdout[-3000:]


@pytest.mark.skipif(not CYCLES_TOOL.is_file(), reason="the shared import_cycles tool is not on this machine")
def test_no_import_cycles():
    done = _run([sys.executable, str(CYCLES_TOOL), "src", "moa_lit"])
    assert done.returncode == 0, done.stdout[-3000:]
