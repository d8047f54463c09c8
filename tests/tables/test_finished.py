"""A finished table is never replaced silently (issue 16, wrong result 5).

The same run on it does nothing; a run with other settings is refused, naming what differs;
``overwrite=True`` / ``--overwrite`` (or ``resume=False`` / ``--no-resume``) computes it again.
"""

from __future__ import annotations

import logging
import os

import numpy as np
import pytest
import xarray as xr
from typer.testing import CliRunner

from devine_onnx.cli import app
from devine_onnx.engines.micromet import MicroMetEngine
from devine_onnx.errors import OutputError
from devine_onnx.io.atomic import partial_path
from devine_onnx.sample_data import sample_dem
from devine_onnx.tables.build import compute_corrections

pytest.importorskip("rioxarray")

ANGLES = [0, 90, 180, 270]
runner = CliRunner()


@pytest.fixture(scope="module")
def dem():
    return sample_dem((64, 64))


@pytest.fixture(scope="module")
def dem_tif(tmp_path_factory, dem):
    path = tmp_path_factory.mktemp("finished") / "dem.tif"
    dem.rio.to_raster(path, driver="GTiff")
    return path


def stamp(path):
    """Identity of the file or store as written (atomic replacement gives a new inode)."""
    st = os.stat(path)
    return st.st_ino, st.st_mtime_ns


def forbid_computing(monkeypatch):
    """Make any computation of directions fail: what runs afterwards must compute nothing."""

    def refuse(self, angles, batch):
        raise AssertionError("directions were computed")
        yield  # pragma: no cover

    monkeypatch.setattr(MicroMetEngine, "batches", refuse)


def micromet(dem, out, length_scale=300.0, **kw):
    options = {"length_scale": length_scale}
    return compute_corrections(
        dem, engine="micromet", engine_options=options, angles=ANGLES, output=out, quiet=True,
        **kw,
    )  # fmt: skip


def length_scale_of(out) -> float:
    with xr.open_dataset(out, engine="zarr" if out.suffix == ".zarr" else "netcdf4") as ds:
        return float(ds.attrs["micromet_length_scale"])


# --------------------------------------------------------------------------- API
@pytest.mark.parametrize("suffix", [".nc", ".zarr"])
def test_same_run_on_a_finished_table_computes_nothing(
    tmp_path, dem, suffix, monkeypatch, caplog
):  # fmt: skip
    out = tmp_path / f"table{suffix}"
    first = micromet(dem, out)
    ref = {n: first[n].values.copy() for n in ("acceleration", "alpha")}
    first.close()
    before = stamp(out)
    forbid_computing(monkeypatch)
    with caplog.at_level(logging.INFO, logger="devine_onnx"):
        again = micromet(dem, out)
    assert "already complete with these settings (4 directions); nothing to compute" in (
        caplog.text
    )
    assert again.encoding["complete_before"] is True
    for name, values in ref.items():
        np.testing.assert_array_equal(again[name].values, values)
    again.close()
    assert stamp(out) == before and not partial_path(out).exists()


@pytest.mark.parametrize("suffix", [".nc", ".zarr"])
def test_other_settings_refused_then_overwrite_replaces(tmp_path, dem, suffix):
    out = tmp_path / f"table{suffix}"
    micromet(dem, out).close()
    before = stamp(out)
    with pytest.raises(OutputError) as info:
        micromet(dem, out, length_scale=500.0)
    msg = str(info.value)
    assert msg.startswith(f"{out}: a finished table computed with other settings")
    assert "micromet_length_scale (300.0 there, 500.0 now)" in msg
    assert "overwrite" in msg and "\n" not in msg
    assert stamp(out) == before and not partial_path(out).exists()
    # other angles: named as well
    with pytest.raises(OutputError, match=r"angles \(4 there, 2 now\)"):
        compute_corrections(dem, engine="micromet", angles=[0, 90], output=out, quiet=True)
    assert stamp(out) == before
    # overwrite=True computes it again and replaces it
    ds = micromet(dem, out, length_scale=500.0, overwrite=True)
    assert float(ds.attrs["micromet_length_scale"]) == 500.0
    assert "is replaced when the new table is complete" in ds.attrs["notes"]
    assert "complete_before" not in ds.encoding
    ds.close()
    assert stamp(out) != before and length_scale_of(out) == 500.0
    # resume=False (--no-resume) replaces it too
    ds = micromet(dem, out, length_scale=700.0, resume=False)
    ds.close()
    assert length_scale_of(out) == 700.0


def test_overwrite_recomputes_the_same_settings(tmp_path, dem):
    out = tmp_path / "table.nc"
    micromet(dem, out).close()
    before = stamp(out)
    micromet(dem, out, overwrite=True).close()
    assert stamp(out) != before


def test_a_file_that_is_not_a_table_is_not_replaced(tmp_path, dem):
    out = tmp_path / "table.nc"
    out.write_text("my notes")
    with pytest.raises(OutputError, match=r"table\.nc: exists and is not a readable correction"):
        micromet(dem, out)
    assert out.read_text() == "my notes"
    micromet(dem, out, overwrite=True).close()
    assert length_scale_of(out) == 300.0


def test_finished_store_checked_before_a_cluster_starts(tmp_path, dem, monkeypatch):
    pytest.importorskip("distributed")
    out = tmp_path / "table.zarr"
    compute_corrections(dem, engine="micromet", angles=ANGLES, output=out, quiet=True).close()
    forbid_computing(monkeypatch)
    # the same settings: nothing computed, no cluster started (workers=1 would take seconds)
    again = compute_corrections(
        dem, engine="micromet", angles=ANGLES, output=out, quiet=True, workers=1
    )
    assert again.encoding["complete_before"] is True
    with pytest.raises(OutputError, match="micromet_length_scale"):
        micromet(dem, out, length_scale=300.0, workers=1)


# --------------------------------------------------------------------------- CLI
def invoke(args):
    return runner.invoke(app, [str(a) for a in args])


def test_cli(tmp_path, dem_tif, monkeypatch):
    out = tmp_path / "t.nc"
    args = ["corrections", dem_tif, "--engine", "micromet", "-o", out, "--angles", "0,90"]
    result = invoke([*args, "--length-scale", "300"])
    assert result.exit_code == 0, result.output
    assert result.stdout.startswith(f"wrote {out}: micromet engine, 2 directions")
    before = stamp(out)

    # the same command: says it is complete, computes nothing
    real = MicroMetEngine.batches
    forbid_computing(monkeypatch)
    result = invoke([*args, "--length-scale", "300"])
    assert result.exit_code == 0, result.output
    assert "already complete with these settings (2 directions)" in result.stderr
    assert "--overwrite" in result.stderr
    assert result.stdout.startswith(f"kept the complete {out}: micromet engine, 2 directions")
    assert stamp(out) == before

    # other settings: one error line naming the difference and --overwrite; the table stays
    result = invoke([*args, "--length-scale", "500"])
    assert result.exit_code == 1, result.output
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "Traceback" not in result.output
    assert "a finished table computed with other settings" in errors[0]
    assert "micromet_length_scale (300.0 there, 500.0 now)" in errors[0]
    assert "--overwrite" in errors[0]
    assert stamp(out) == before and not partial_path(out).exists()

    # --overwrite replaces it; so does --no-resume
    monkeypatch.setattr(MicroMetEngine, "batches", real)
    result = invoke([*args, "--length-scale", "500", "--overwrite"])
    assert result.exit_code == 0, result.output
    assert result.stdout.startswith(f"wrote {out}")
    assert length_scale_of(out) == 500.0
    result = invoke([*args, "--length-scale", "700", "--no-resume"])
    assert result.exit_code == 0, result.output
    assert length_scale_of(out) == 700.0
