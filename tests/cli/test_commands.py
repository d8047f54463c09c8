"""The commands' success paths and the messages of their options."""

from __future__ import annotations

import pytest
import xarray as xr

from devine_onnx.io.atomic import partial_path
from tests.cli.helpers import (
    assert_refused,
    invoke,
)


# ---------------------------------------------------------------------------- success path
def test_corrections_table(table_nc):
    with xr.open_dataset(table_nc) as ds:
        assert list(ds["angle"].values) == [0, 90, 180, 270]
        assert ds["acceleration"].dims == ("angle", "y", "x")
    assert not partial_path(table_nc).exists()


def test_corrections_summary_and_synthetic_warning(tmp_path, dem_tif, demo_model_file):
    out = tmp_path / "t.nc"
    result = invoke(
        [
            "corrections",
            dem_tif,
            "-m",
            demo_model_file,
            "-o",
            out,
            "--angles",
            "270",
            "--device",
            "cpu",
            "--no-resume",
        ]
    )
    assert result.exit_code == 0, result.output
    assert f"wrote {out}: devine engine, 1 direction on a" in result.stdout
    # The summary says where the table has values and where they are reliable.
    assert "values within" in result.stdout and "reliable within" in result.stdout
    assert "synthetic" in result.stderr and "NOT physical" in result.stderr


def test_corrections_model_from_environment(tmp_path, dem_tif, demo_model_file, monkeypatch):
    monkeypatch.setenv("DEVINE_ONNX_MODEL", str(demo_model_file))
    out = tmp_path / "t.nc"
    result = invoke(["corrections", dem_tif, "-o", out, "--angles", "90", "-q", "--device", "cpu"])
    assert result.exit_code == 0, result.output
    assert result.stdout == ""
    assert out.is_file()


def test_downscale_output(wind_nc):
    with xr.open_dataset(wind_nc) as ds:
        assert {"wind_speed", "wind_from_direction", "eastward_wind", "northward_wind"} <= set(
            ds.data_vars
        )
        assert ds["wind_speed"].attrs["units"] == "m s-1"
        assert ds.sizes["time"] == 4


def test_plot_commands(tmp_path, wind_nc, table_nc):
    import matplotlib.image as mpimg

    png = tmp_path / "map.png"
    result = invoke(["plot", wind_nc, "--table", table_nc, "--time", "2026-01-15T01:00", "-o", png])
    assert result.exit_code == 0, result.output
    assert "wind map" in result.stdout
    assert mpimg.imread(png).ndim == 3
    png2 = tmp_path / "table.png"
    result = invoke(["plot", table_nc, "--angle", "90", "-o", png2, "-q"])
    assert result.exit_code == 0, result.output
    assert png2.stat().st_size > 1000


# ---------------------------------------------------------------------------- option spelling


@pytest.mark.parametrize(
    ("extra", "needles"),
    [
        (["--coarsen", "100000"], ["--coarsen 100000: larger than the table ("]),
        (["--coarsen", "0"], ["--coarsen 0: expected a positive integer"]),
        (["--chunk-time", "0"], ["--chunk-time 0: expected a positive integer"]),
        (["--complevel", "12"], ["--complevel 12: expected an integer from 0"]),
        (["--u-var", "u10"], ["give both --u-var and --v-var (got only --u-var u10)"]),
        (["--nwp-crs", "EPSG:999999"], ["--nwp-crs EPSG:999999: not a CRS"]),
    ],
)
def test_downscale_messages_name_the_option_typed(tmp_path, nwp_nc, table_nc, extra, needles):
    out = tmp_path / "wind.nc"
    result = invoke(["downscale", nwp_nc, "--table", table_nc, "-o", out, "-q", *extra])
    assert_refused(result, *needles, outputs=[out])
    for api in ("coarsen=", "chunk_time", "complevel=", "u_var", "v_var", "nwp_crs"):
        assert api not in result.stderr


def test_projected_nwp_needs_the_wind_frame(tmp_path, projected_nwp_nc, table_nc):
    out = tmp_path / "wind.nc"
    args = ["downscale", projected_nwp_nc, "--table", table_nc, "-o", out, "-q", "--no-cache"]
    result = invoke(args)
    assert_refused(
        result,
        projected_nwp_nc,
        "say which with --nwp-wind-frame earth or --nwp-wind-frame grid",
        outputs=[out],
    )
    assert "nwp_wind_frame" not in result.stderr
    result = invoke([*args, "--nwp-wind-frame", "earth"])
    assert result.exit_code == 0, result.output
    with xr.open_dataset(out) as ds:
        assert "earth-relative (--nwp-wind-frame earth)" in ds.attrs["nwp_wind_frame"]
    result = invoke([*args, "--nwp-wind-frame", "sideways"])
    assert result.exit_code == 2
    # The same grid without its CRS: the message names --nwp-crs, not nwp_crs.
    bare = tmp_path / "bare.nc"
    with xr.open_dataset(projected_nwp_nc) as ds:
        ds.drop_vars("spatial_ref").load().to_netcdf(bare)
    assert_refused(invoke(["downscale", bare, "--table", table_nc, "-o", out]), "--nwp-crs")


def test_regrid_refuses_a_non_nc_weights_file(tmp_path, nwp_nc, table_nc):
    out = tmp_path / "w.zarr"
    result = invoke(["regrid", nwp_nc, "--table", table_nc, "-o", out])
    assert_refused(result, out, "written as NetCDF", "w.nc", outputs=[out])
    assert list(tmp_path.iterdir()) == []


def test_downscale_warnings_are_one_line_and_name_options(tmp_path, nwp_nc, table_nc):
    """table_nc has 4 directions; blocks of n pixels that do not divide the table's sides."""
    with xr.open_dataset(table_nc) as t:
        ny, nx = t.sizes["y"], t.sizes["x"]
    n = next(k for k in range(3, 50) if ny % k and nx % k)
    out = tmp_path / "wind.nc"
    args = ["downscale", nwp_nc, "--table", table_nc, "-o", out, "-q", "--no-cache"]
    result = invoke([*args, "--coarsen", n])
    assert result.exit_code == 0, result.output
    lines = result.stderr.splitlines()
    coarse = [line for line in lines if "directions up to 90° apart" in line]
    assert len(coarse) == 1 and coarse[0].startswith("warning: ")
    assert "use --angular-interpolation linear" in coarse[0]
    rest = [line for line in lines if f"--coarsen {n}" in line]
    assert len(rest) == 1 and rest[0].startswith(f"warning: --coarsen {n}: ")
    assert f"the last {ny % n} row" in rest[0] and f"and {nx % n} column" in rest[0]
    result = invoke([*args, "--angular-interpolation", "linear"])
    assert result.exit_code == 0, result.output
    assert "directions up to" not in result.stderr


def test_downscale_options_and_plot(tmp_path, nwp_nc, table_nc):
    out = tmp_path / "wind_grid.nc"
    result = invoke(
        [
            "downscale",
            nwp_nc,
            "--table",
            table_nc,
            "-o",
            out,
            "--no-cache",
            "--coarsen",
            "3",
            "--grid-relative",
            "--angular-interpolation",
            "linear",
            "--chunk-time",
            "3",
            "-q",
        ]
    )
    assert result.exit_code == 0, result.output
    assert [p.name for p in tmp_path.iterdir()] == [out.name]  # no cached weights
    with xr.open_dataset(out) as ds:
        assert {"x_wind", "y_wind", "wind_speed"} <= set(ds.data_vars)
        assert ds.sizes["x"] == 131 // 3
    png = tmp_path / "grid.png"
    result = invoke(["plot", out, "--table", table_nc, "-o", png, "--time", "2026-01-15T03"])
    assert result.exit_code == 0, result.output
    assert png.is_file()


def test_downscale_caches_weights_by_default(tmp_path, nwp_nc, table_nc):
    out = tmp_path / "wind.nc"
    cache = tmp_path / "cache"
    cache.mkdir()
    result = invoke(
        ["downscale", nwp_nc, "--table", table_nc, "-o", out, "--cache-dir", cache, "-q"]
    )
    assert result.exit_code == 0, result.output
    assert list(cache.iterdir())


@pytest.mark.parametrize("suffix", [".nc", ".zarr"])
def test_downscale_write_failure_is_one_line(tmp_path, nwp_nc, table_nc, suffix, monkeypatch):
    """A disk that fills up mid-series: one line naming the output, nothing left behind."""
    import errno

    from devine_onnx.io.hdf5_chunks import ChunkAppender

    calls = []

    def full_disk(real):
        def write(*args, **kwargs):
            calls.append(1)
            if len(calls) > 1:
                raise OSError(errno.ENOSPC, "No space left on device")
            return real(*args, **kwargs)

        return write

    if suffix == ".nc":
        monkeypatch.setattr(ChunkAppender, "append", full_disk(ChunkAppender.append))
    else:
        from devine_onnx.io import writers

        monkeypatch.setattr(writers._ZarrWriter, "_write", full_disk(writers._ZarrWriter._write))
    out = tmp_path / f"wind{suffix}"
    result = invoke(
        ["downscale", nwp_nc, "--table", table_nc, "-o", out, "--chunk-time", "3", "-q"]
    )
    assert len(calls) == 2
    assert_refused(result, str(out), "No space left on device", "free disk space", outputs=[out])
