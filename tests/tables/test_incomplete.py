"""Issue 20 #4/#5/#7: unfinished tables are refused, holes are counted, messages are one line.

Tables are computed by the MicroMet engine (fast, no model) and then damaged by the test the
way a user or a crash would: a partial output renamed to the final name, chunk files deleted
from a Zarr store, a direction overwritten with NaN.
"""

from __future__ import annotations

import os
import shutil
import warnings
from pathlib import Path

import numpy as np
import pytest
import xarray as xr
from typer.testing import CliRunner

from devine_onnx.cli import app
from devine_onnx.engines.micromet import MicroMetEngine
from devine_onnx.errors import TableError
from devine_onnx.io.atomic import partial_path
from devine_onnx.sample_data import sample_dem, sample_nwp
from devine_onnx.tables.build import compute_corrections
from devine_onnx.tables.holes import IncompleteTableWarning
from devine_onnx.tables.table import CorrectionTable

SHAPE = (64, 80)
ANGLES = range(0, 360, 10)  # 36 directions


class Stop(Exception):
    pass


@pytest.fixture(scope="module")
def dem():
    return sample_dem(shape=SHAPE)


def interrupted(dem, out: Path, after: int, monkeypatch) -> Path:
    """Run corrections and stop it after ``after`` directions; return the partial output."""
    original = MicroMetEngine.batches

    def batches(self, angles, batch):
        done = 0
        for item in original(self, angles, batch):
            if done >= after:
                raise Stop
            done += len(item[0])
            yield item

    with monkeypatch.context() as mp:
        mp.setattr(MicroMetEngine, "batches", batches)
        with pytest.raises(Stop):
            compute_corrections(dem, engine="micromet", angles=ANGLES, output=out, quiet=True)
    partial = partial_path(out)
    assert partial.exists() and not out.exists()
    return partial


def complete(dem, out: Path) -> Path:
    compute_corrections(dem, engine="micromet", angles=ANGLES, output=out, quiet=True)
    return out


def no_warning(source):
    with warnings.catch_warnings():
        warnings.simplefilter("error", IncompleteTableWarning)
        return CorrectionTable.open(source)


# ------------------------------------------------------------------ unfinished (marker set)
@pytest.mark.parametrize("suffix", [".nc", ".zarr"])
def test_renamed_partial_is_refused(tmp_path, dem, suffix, monkeypatch):
    out = tmp_path / f"t{suffix}"
    partial = interrupted(dem, out, 31, monkeypatch)
    os.rename(partial, out)  # what the tester did: 31 of 36 directions, marker still set
    with pytest.raises(TableError) as info:
        CorrectionTable.open(out)
    msg = str(info.value)
    assert "\n" not in msg and str(out) in msg
    assert "unfinished" in msg and "31 of 36 directions" in msg
    assert "devine-onnx corrections" in msg and "same options" in msg


def test_renamed_partial_is_refused_by_downscale_cli(tmp_path, dem, monkeypatch):
    out = tmp_path / "t.nc"
    os.rename(interrupted(dem, out, 31, monkeypatch), out)
    sample_nwp(n_times=2).to_netcdf(tmp_path / "nwp.nc")
    wind = tmp_path / "wind.nc"
    result = CliRunner().invoke(
        app, ["downscale", str(tmp_path / "nwp.nc"), "-t", str(out), "-o", str(wind), "-q"]
    )
    assert result.exit_code == 1, result.output
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "unfinished" in errors[0] and "Traceback" not in result.output
    assert not wind.exists() and not partial_path(wind).exists()


# ------------------------------------------------------------------ holes
def test_complete_tables_open_without_warning(tmp_path, dem):
    for suffix in (".nc", ".zarr"):
        table = no_warning(complete(dem, tmp_path / f"t{suffix}"))
        assert not table.holes and table.holes.checked == "storage chunks"
        table.close()
    mem = compute_corrections(dem, engine="micromet", angles=ANGLES, quiet=True)
    assert not no_warning(mem).holes


def test_zarr_with_deleted_chunk_files_warns(tmp_path, dem):
    out = complete(dem, tmp_path / "t.zarr")
    deleted = [10, 11, 12, 30, 35]  # direction indices: 100, 110, 120, 300, 350 degrees
    for k in deleted:
        for name in ("acceleration", "alpha"):
            chunk = out / name / f"{k}.0.0"
            assert chunk.is_file()
            chunk.unlink()
    with pytest.warns(IncompleteTableWarning) as record:
        table = CorrectionTable.open(out)
    msg = str(record[0].message)
    assert str(out) in msg and "5 of 36 directions have no value (100, 110, 120, 300, 350)" in msg
    assert table.holes.empty_directions == (100.0, 110.0, 120.0, 300.0, 350.0)
    assert table.holes.pixels == 0


def test_spatial_chunks_missing_for_some_directions_are_counted(tmp_path, dem):
    """A table in spatial chunks (as distributed runs write them) that lost a few chunks."""
    full = compute_corrections(dem, engine="micromet", angles=ANGLES, quiet=True)
    out = tmp_path / "tiles.zarr"
    enc = {n: {"chunks": (1, 24, 32)} for n in ("acceleration", "alpha")}
    full.to_zarr(out, encoding=enc, zarr_format=2, consolidated=False)
    # Tile (1, 2) of directions 0 and 5, tile (2, 0) of direction 7: 16x32 + 24x32 pixels
    # (the last tile row has 64 - 48 = 16 rows).
    for k, j, i in ((0, 2, 1), (5, 2, 1), (7, 1, 0)):
        (out / "acceleration" / f"{k}.{j}.{i}").unlink()
    with pytest.warns(IncompleteTableWarning, match=r"1280 of 5120 pixels \(25.0%\)"):
        table = CorrectionTable.open(out)
    assert table.holes.pixels == 16 * 32 + 24 * 32 and not table.holes.empty_directions


def test_netcdf_direction_all_nan_warns(tmp_path, dem):
    ds = compute_corrections(dem, engine="micromet", angles=ANGLES, quiet=True)
    ds["acceleration"][3] = np.nan
    ds["alpha"][3] = np.nan
    out = tmp_path / "nan.nc"
    enc = {n: {"chunksizes": (1, *SHAPE), "zlib": True} for n in ("acceleration", "alpha")}
    ds.to_netcdf(out, encoding=enc)
    with pytest.warns(IncompleteTableWarning, match=r"1 of 36 directions have no value \(30\)"):
        CorrectionTable.open(out)
    # The same Dataset in memory: checked value by value.
    with pytest.warns(IncompleteTableWarning, match=r"1 of 36 directions have no value \(30\)"):
        CorrectionTable.open(ds)


def test_pixels_missing_in_memory_are_counted_exactly(dem):
    ds = compute_corrections(dem, engine="micromet", angles=ANGLES, quiet=True)
    ds["acceleration"][2, 5:9, 10:13] = np.nan  # 12 pixels, one direction
    ds["acceleration"][:, 0:2, 0:3] = np.nan  # 6 pixels, every direction: not a hole
    with pytest.warns(IncompleteTableWarning, match=r"12 of 5120 pixels"):
        table = CorrectionTable.open(ds)
    assert table.holes.pixels == 12


@pytest.mark.parametrize("suffix", [".nc", ".zarr"])
def test_table_without_any_value_is_refused(tmp_path, dem, suffix):
    ds = compute_corrections(dem, engine="micromet", angles=ANGLES, quiet=True)
    ds["acceleration"][:] = np.nan
    ds["alpha"][:] = np.nan
    out = tmp_path / f"empty{suffix}"
    if suffix == ".zarr":
        ds.to_zarr(out, zarr_format=2, consolidated=False)
    else:
        ds.to_netcdf(out)
    with pytest.raises(TableError, match="holds no value .all 36 directions are NaN"):
        CorrectionTable.open(out)


def test_downscale_cli_names_the_holes(tmp_path, dem):
    out = complete(dem, tmp_path / "t.zarr")
    for name in ("acceleration", "alpha"):
        shutil.os.unlink(out / name / "4.0.0")
    sample_nwp(n_times=2).to_netcdf(tmp_path / "nwp.nc")
    wind = tmp_path / "wind.nc"
    result = CliRunner().invoke(
        app, ["downscale", str(tmp_path / "nwp.nc"), "-t", str(out), "-o", str(wind)]
    )
    assert result.exit_code == 0, result.output
    lines = [line for line in result.stderr.splitlines() if "incomplete correction table" in line]
    assert len(lines) == 1 and "1 of 36 directions have no value (40)" in lines[0], result.stderr


# ------------------------------------------------------------------ issue 20 #7
def test_table_without_acceleration_is_one_line_on_the_cli(tmp_path, dem):
    ds = compute_corrections(dem, engine="micromet", angles=ANGLES, quiet=True)
    out = tmp_path / "noacc.nc"
    ds.drop_vars("acceleration").to_netcdf(out)
    sample_nwp(n_times=2).to_netcdf(tmp_path / "nwp.nc")
    for args, needle in (
        (
            ["downscale", str(tmp_path / "nwp.nc"), "-t", str(out), "-o", str(tmp_path / "w.nc")],
            "missing acceleration",
        ),
        (["plot", str(out), "-o", str(tmp_path / "p.png")], "no wind_speed variable"),
    ):
        result = CliRunner().invoke(app, args)
        assert result.exit_code == 1, (args[0], result.output)
        assert "KeyError" not in result.output and "unexpected" not in result.output, args[0]
        errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
        assert len(errors) == 1 and needle in errors[0], (args[0], result.stderr)
        assert xr.open_dataset(out).sizes["angle"] == 36
