"""The README's Python API example runs as written (on the files of the demo)."""

from __future__ import annotations

import re

import numpy as np
import xarray as xr

from devine_onnx.demo import run_demo
from tests.conftest import ROOT


def _api_snippet() -> str:
    text = (ROOT / "README.md").read_text()
    section = text[text.index("## Python API") :]
    match = re.search(r"```python\n(.*?)```", section, re.S)
    assert match, "no python block in the README's Python API section"
    return match.group(1)


def test_readme_api_snippet_runs_as_written(tmp_path, monkeypatch, capsys):
    run_demo(tmp_path / "demo", angle_step=30, quiet=True)  # what the README says to run first
    monkeypatch.chdir(tmp_path)
    namespace: dict = {}
    exec(compile(_api_snippet(), "README.md", "exec"), namespace)

    # Each documented call gave what the comments say, not a module or a placeholder.
    import devine_onnx as dv

    assert callable(dv.downscale) and callable(dv.info) and callable(dv.compute_corrections)
    from devine_onnx import downscale, info

    assert callable(downscale) and callable(info)
    wind = namespace["wind"]
    assert isinstance(wind, xr.Dataset) and wind.attrs["table_engine"] == "micromet"
    assert (tmp_path / "wind.nc").is_file() and (tmp_path / "weights.nc").is_file()
    assert isinstance(namespace["weights"], dv.RegridWeights)
    assert namespace["devine"].attrs["engine"] == "devine"
    assert namespace["devine"].attrs["resolution"] == 30.0
    uvw = namespace["uvw"]
    assert uvw.shape == (*namespace["crop"].shape, 3) and np.isfinite(uvw).all()
    assert "micromet" in capsys.readouterr().out
