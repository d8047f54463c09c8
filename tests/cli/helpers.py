"""Helpers of the CLI tests: run a command in-process or as a process, check a refusal."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from typer.testing import CliRunner

from devine_onnx.cli import app
from devine_onnx.io.atomic import partial_path

COMMANDS = ["convert", "corrections", "regrid", "downscale", "demo", "plot", "evaluate", "info"]
SMALL = (185, 185)  # table of 131 x 131 pixels
ANGLES = "0,90,180,270"

runner = CliRunner()


def corrections_args(dem, out, model):
    """``corrections`` of one direction on the CPU."""
    return ["corrections", dem, "-m", model, "-o", out, "--angles", "270", "--device", "cpu"]


def invoke(args, **kwargs):
    return runner.invoke(app, [str(a) for a in args], **kwargs)


def assert_refused(result, *needles, code: int = 1, outputs=()):
    """Exit ``code``; one ``error:`` line containing ``needles``; nothing left behind."""
    detail = f"exit {result.exit_code}\n{result.output}\n{result.exception!r}"
    assert result.exit_code == code, detail
    assert "Traceback" not in result.output, detail
    if code == 1:
        lines = [line for line in result.stderr.splitlines() if line.strip()]
        errors = [line for line in lines if line.startswith("error:")]
        assert len(errors) == 1, detail
        assert all(line.startswith(("error:", "warning:", "note:")) for line in lines), detail
        assert "unexpected" not in errors[0], detail
        for needle in needles:
            assert str(needle) in errors[0], detail
    else:
        for needle in needles:
            assert str(needle) in result.output, detail
    for out in outputs:
        out = Path(out)
        assert not out.exists(), f"{out} left behind"
        assert not partial_path(out).exists(), f"{partial_path(out)} left behind"


def write_tif(da, path):
    da.rio.to_raster(path, driver="GTiff")
    return path


def run_main(*args, **kwargs):
    code = "from devine_onnx.cli import main; main()"
    env = {k: v for k, v in os.environ.items() if k != "DEVINE_ONNX_MODEL"}
    return subprocess.run(
        [sys.executable, "-c", code, *map(str, args)],
        capture_output=True,
        text=True,
        timeout=300,
        env=env,
        **kwargs,
    )


def click_group():
    import typer.main

    return typer.main.get_command(app)
