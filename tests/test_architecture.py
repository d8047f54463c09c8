"""The package's layers and its install list (docs/architecture.md).

The import contracts live in pyproject.toml ([tool.importlinter]); CI runs `lint-imports`
too. These tests run the same contracts from pytest, and check that they do catch an upward
import and a cycle, on a copy of the package with one bad module added.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "devine_onnx"


def _lint_imports(cwd: Path) -> subprocess.CompletedProcess:
    exe = Path(sys.executable).with_name("lint-imports")
    if not exe.exists():
        pytest.skip("import-linter is not installed (it comes with the test extra)")
    return subprocess.run(
        [str(exe), "--no-cache", "--config", str(cwd / "pyproject.toml")],
        cwd=cwd,
        capture_output=True,
        text=True,
        env={"PYTHONPATH": str(cwd), "PATH": "/usr/bin:/bin"},
    )


def test_import_contracts_hold():
    result = _lint_imports(ROOT)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-2000:]
    assert "0 broken" in result.stdout


@pytest.mark.parametrize(
    ("module", "line"),
    [
        # io is below tables: an upward import
        ("io/_probe.py", "import devine_onnx.tables.table\n"),
        # two modules of one package importing each other
        ("downscaling/_probe.py", "import devine_onnx.downscaling.api\n"),
    ],
)
def test_import_contracts_catch_violations(tmp_path, module, line):
    copy = tmp_path / "devine_onnx"
    shutil.copytree(PACKAGE, copy, ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(ROOT / "pyproject.toml", tmp_path / "pyproject.toml")
    (copy / module).write_text(line)
    if module.startswith("downscaling"):
        # close the cycle: api imports the probe, the probe imports api
        api = copy / "downscaling" / "api.py"
        api.write_text(api.read_text() + "\nimport devine_onnx.downscaling._probe  # noqa\n")
    result = _lint_imports(tmp_path)
    assert result.returncode != 0
    assert "BROKEN" in result.stdout
    assert "_probe" in result.stdout


def test_every_subpackage_is_installed():
    """A subpackage missing from [tool.setuptools] packages is left out of `pip install .`."""
    tomllib = pytest.importorskip("tomllib")  # Python >= 3.11
    listed = set(
        tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"]
    )
    found = {
        ".".join(init.parent.relative_to(ROOT).parts)
        for init in PACKAGE.rglob("__init__.py")
        if "__pycache__" not in init.parts
    }
    assert found - listed == set()
