"""Quick-look maps: downscaled wind over a hillshade, and the correction table explorer.

matplotlib is imported inside the functions only, and figures are drawn with the object API
(:class:`matplotlib.figure.Figure`, rendered by Agg), so that importing this module is cheap and
never changes pyplot's backend or state. Images are written atomically.

Direction arrows are drawn in grid coordinates: earth-relative components
(``eastward_wind``, ``northward_wind``) are rotated into grid-relative ones by the meridian
convergence of the output's CRS at each arrow (docs/method.md §4), so that an arrow points where the
wind blows on the map.
"""

from __future__ import annotations

import math
import os
from pathlib import Path

import numpy as np

from .errors import InputFileError, OptionError, OutputError, TableError, first_line
from .io.atomic import atomic_output, check_writable

__all__ = ["plot_file", "plot_table", "plot_wind"]

#: Default image sizes (inches) and resolution; the PNG is exactly figsize * dpi pixels.
WIND_FIGSIZE = (9.0, 7.5)
TABLE_FIGSIZE = (14.0, 6.0)
DPI = 100
#: Opacity of the coloured field over the hillshade.
OVERLAY_ALPHA = 0.6


# ---------------------------------------------------------------------------- input helpers
def _open(path_or_ds, what: str):
    """(dataset, label) from a path (NetCDF or Zarr) or an already opened Dataset."""
    import xarray as xr

    if isinstance(path_or_ds, xr.Dataset):
        return path_or_ds, "dataset"
    p = Path(path_or_ds)
    if not p.exists():
        raise InputFileError(f"{p}: file not found; give the {what} file to plot")
    try:
        if p.is_dir() or p.suffix.lower() == ".zarr":
            ds = xr.open_zarr(p)
        else:
            ds = xr.open_dataset(p)
    except Exception as exc:  # noqa: BLE001 - any reader failure means "not a dataset"
        msg = first_line(exc, 120)
        raise InputFileError(
            f"{p}: cannot be read as a NetCDF or Zarr {what} ({type(exc).__name__}"
            f"{': ' + msg if msg else ''})"
        ) from None
    return ds, str(p)


def _is_true(value) -> bool:
    if isinstance(value, bytes):
        value = value.decode()
    if isinstance(value, str):
        return value.strip().lower() in ("true", "1", "yes")
    try:
        return bool(value)
    except (TypeError, ValueError):
        return False


def _synthetic(attrs) -> bool:
    """The file says it was computed with synthetic (untrained) model weights."""
    if _is_true(attrs.get("synthetic_weights", False)):
        return True
    return "synthetic" in str(attrs.get("comment", "")).lower()


def _xy_names(da, label: str) -> tuple[str, str]:
    """Names of the (y, x) dimensions of a 2-D map variable."""
    dims = da.dims
    if len(dims) < 2:
        raise InputFileError(f"{label}: variable {da.name!r} is not a map (dims {dims})")
    ydim, xdim = dims[-2], dims[-1]
    for dim in (ydim, xdim):
        if dim not in da.coords or da[dim].ndim != 1 or da[dim].size < 2:
            raise InputFileError(
                f"{label}: variable {da.name!r} has no 1-D coordinate {dim!r}; expected a "
                "devine-onnx output on a regular (y, x) grid"
            )
    return ydim, xdim


def _north_up(da):
    """Same array with y decreasing (row 0 = north) and x increasing."""
    ydim, xdim = da.dims[-2], da.dims[-1]
    if da[ydim].values[0] < da[ydim].values[-1]:
        da = da.isel({ydim: slice(None, None, -1)})
    if da[xdim].values[0] > da[xdim].values[-1]:
        da = da.isel({xdim: slice(None, None, -1)})
    return da


def _extent_km(da) -> tuple[float, float, float, float]:
    """imshow extent (left, right, bottom, top) in km of a north-up (y, x) array."""
    y = np.asarray(da[da.dims[-2]].values, dtype=np.float64)
    x = np.asarray(da[da.dims[-1]].values, dtype=np.float64)
    dx, dy = abs(x[1] - x[0]), abs(y[1] - y[0])
    return (
        (x.min() - dx / 2) / 1000.0,
        (x.max() + dx / 2) / 1000.0,
        (y.min() - dy / 2) / 1000.0,
        (y.max() + dy / 2) / 1000.0,
    )


def _crs(ds, var: str):
    """pyproj CRS of ``ds[var]`` from its grid mapping, or None."""
    from .io.cf import grid_mapping_crs

    return grid_mapping_crs(ds, var)


def _crs_label(crs) -> str:
    if crs is None:
        return ""
    auth = crs.to_authority(min_confidence=70)
    return f", {auth[0]}:{auth[1]}" if auth else f", {crs.name}"


def _hillshade(elevation):
    """Hillshade (0..1) of a north-up elevation array, NaN filled with the mean."""
    from matplotlib.colors import LightSource

    z = np.asarray(elevation.values, dtype=np.float64)
    if not np.isfinite(z).any():
        return None
    z = np.where(np.isfinite(z), z, np.nanmean(z))
    y = elevation[elevation.dims[-2]].values
    x = elevation[elevation.dims[-1]].values
    dx, dy = abs(float(x[1] - x[0])), abs(float(y[1] - y[0]))
    return LightSource(azdeg=315, altdeg=40).hillshade(z, vert_exag=2.0, dx=dx, dy=dy)


def _elevation(source, label: str):
    """North-up ``elevation(y, x)`` from a table path/Dataset (or None)."""
    if source is None:
        return None
    if hasattr(source, "data_vars"):
        ds, lab = source, label
    else:
        ds, lab = _open(source, "correction table")
    if "elevation" not in ds.data_vars and "elevation" not in ds.coords:
        raise TableError(
            f"{lab}: no elevation variable to draw the hillshade; give the correction table "
            "written by 'devine-onnx corrections' with --table"
        )
    elev = ds["elevation"]
    _xy_names(elev, lab)
    while elev.ndim > 2:
        elev = elev.isel({elev.dims[0]: 0})
    return _north_up(elev)


def _draw_background(ax, elev) -> None:
    if elev is None:
        ax.set_facecolor("0.85")
        return
    shade = _hillshade(elev)
    if shade is not None:
        ax.imshow(
            shade,
            cmap="gray",
            vmin=0.0,
            vmax=1.0,
            extent=_extent_km(elev),
            origin="upper",
            interpolation="bilinear",
            zorder=0,
        )


def _shade_edge_influence(ax, ds, data: np.ndarray) -> bool:
    """Shade the pixels whose values the table flags as edge-influenced (``edge_influence``
    = 1, docs/method.md §9.1), where ``data`` (north-up, same grid) has values."""
    if "edge_influence" not in ds.variables:
        return False
    flag = _north_up(ds["edge_influence"].load())
    if flag.shape != data.shape:
        return False
    shade = (np.asarray(flag.values) == 1) & np.isfinite(data)
    if not shade.any():
        return False
    from matplotlib.colors import ListedColormap

    ax.imshow(
        np.where(shade, 1.0, np.nan),
        cmap=ListedColormap(["black"]),
        vmin=0.0,
        vmax=1.0,
        alpha=0.35,
        extent=_extent_km(flag),
        origin="upper",
        interpolation="nearest",
        zorder=2,
    )
    return True


#: Caption of the shading drawn by :func:`_shade_edge_influence`.
_EDGE_NOTE = "darkened: values influenced by the DEM's edge (edge_influence = 1)"


def _figure(figsize, dpi):
    from matplotlib.figure import Figure

    return Figure(figsize=figsize, dpi=dpi, layout="constrained")


def _save(fig, output, dpi) -> Path:
    """Write ``fig`` atomically; the format follows the suffix (png by default)."""
    out = Path(output)
    fmt = out.suffix.lstrip(".").lower() or "png"
    if fmt not in fig.canvas.get_supported_filetypes():
        raise OutputError(
            f"{out}: unsupported image format {fmt!r}; use .png (or .pdf, .svg, .jpg)"
        )
    with atomic_output(out) as tmp:
        fig.savefig(tmp, format=fmt, dpi=dpi)
    return out


def _check_output(output) -> Path:
    """Refuse a folder, an unknown image suffix or an unwritable folder before any work."""
    from matplotlib.backend_bases import FigureCanvasBase

    out = Path(output)
    if out.is_dir():
        raise OutputError(f"{out}: is a folder; give an image file name such as map.png")
    fmt = out.suffix.lstrip(".").lower() or "png"
    if fmt not in FigureCanvasBase.get_supported_filetypes():
        raise OutputError(
            f"{out}: unsupported image format {fmt!r}; use .png (or .pdf, .svg, .jpg)"
        )
    return check_writable(out)


def _fmt_step(step) -> str:
    """A time step as '1 h', '15 min', '3 d' or pandas' text."""
    import pandas as pd

    seconds = pd.Timedelta(step).total_seconds()
    for unit, size in (("d", 86400), ("h", 3600), ("min", 60), ("s", 1)):
        if seconds and seconds % size == 0:
            return f"{seconds / size:g} {unit}"
    return str(step)


# ---------------------------------------------------------------------------- time selection
def _select_time(speed, ds, time, label: str):
    """(index, timestamp or None) of the requested time step."""
    import pandas as pd

    if "time" not in speed.dims:
        if time is not None:
            raise OptionError(f"--time {time}: {label} has no time dimension; omit --time")
        return None, None
    values = ds["time"].values
    n = values.size
    if n == 0:
        raise InputFileError(f"{label}: the time dimension is empty")
    is_dt = np.issubdtype(values.dtype, np.datetime64)
    stamps = pd.DatetimeIndex(values) if is_dt else None

    def describe() -> str:
        if not is_dt:
            return f"{n} time steps, index 0 to {n - 1}"
        first, last = stamps[0].isoformat(), stamps[-1].isoformat()
        if n == 1:
            return f"1 time step: {first}"
        steps = np.unique(np.diff(stamps.values))
        every = f"every {_fmt_step(steps[0])}" if steps.size == 1 else "irregular steps"
        return f"{n} time steps from {first} to {last}, {every}"

    if time is None:
        return 0, (stamps[0] if is_dt else None)
    if isinstance(time, (int, np.integer)) and not isinstance(time, bool):
        if not -n <= int(time) < n:
            raise OptionError(f"--time {time}: index out of range for {label} ({describe()})")
        i = int(time) % n
        return i, (stamps[i] if is_dt else None)
    if not is_dt:
        raise OptionError(f"--time {time}: {label} has no date/time axis ({describe()})")
    try:
        ts = pd.Timestamp(time)
    except (ValueError, TypeError):
        raise OptionError(
            f"--time {time!r}: not a date/time; use ISO 8601 such as "
            f"{stamps[0].isoformat()} ({label} has {describe()})"
        ) from None
    if ts.tzinfo is not None:
        ts = ts.tz_convert("UTC").tz_localize(None)
    hits = np.nonzero(stamps == ts)[0]
    if hits.size == 0:
        raise OptionError(f"--time {time}: not in {label}; it has {describe()}")
    i = int(hits[0])
    return i, stamps[i]


# ---------------------------------------------------------------------------- arrows
def _grid_components(ds, sel, crs, label: str):
    """Grid-relative (u, v) of the selected step, north-up, or None."""
    if "x_wind" in ds.data_vars and "y_wind" in ds.data_vars:
        return _north_up(sel(ds["x_wind"])), _north_up(sel(ds["y_wind"]))
    if "eastward_wind" in ds.data_vars and "northward_wind" in ds.data_vars:
        u, v = _north_up(sel(ds["eastward_wind"])), _north_up(sel(ds["northward_wind"]))
    elif "wind_from_direction" in ds.data_vars:
        from .wind import speed_dir_to_uv

        spd = _north_up(sel(ds["wind_speed"]))
        d = _north_up(sel(ds["wind_from_direction"]))
        uu, vv = speed_dir_to_uv(spd.values, d.values)
        u, v = spd.copy(data=uu), spd.copy(data=vv)
    else:
        return None
    if crs is not None and not crs.is_geographic:
        from .wind import earth_to_grid, meridian_convergence

        x = u[u.dims[-1]].values
        y = u[u.dims[-2]].values
        gamma = meridian_convergence(x[None, :], y[:, None], crs)
        uu, vv = earth_to_grid(u.values, v.values, np.nan_to_num(gamma))
        u, v = u.copy(data=uu), v.copy(data=vv)
    return u, v


def _nice(value: float) -> float:
    """1, 2 or 5 times a power of ten, not above ``value``."""
    if not np.isfinite(value) or value <= 0:
        return 1.0
    exp = math.floor(math.log10(value))
    for m in (5, 2, 1):
        if m * 10**exp <= value:
            return float(m * 10**exp)
    return float(10**exp)


def _quiver(ax, u, v, arrows: int) -> None:
    ny, nx = u.shape[-2:]
    step = max(1, math.ceil(max(ny, nx) / max(arrows, 1)))
    rows = np.arange(step // 2, ny, step)
    cols = np.arange(step // 2, nx, step)
    x = u[u.dims[-1]].values[cols] / 1000.0
    y = u[u.dims[-2]].values[rows] / 1000.0
    uu = np.asarray(u.values)[np.ix_(rows, cols)]
    vv = np.asarray(v.values)[np.ix_(rows, cols)]
    spd = np.hypot(uu, vv)
    if not np.isfinite(spd).any() or np.nanmax(spd) == 0:
        return
    spacing = step * abs(float(u[u.dims[-1]].values[1] - u[u.dims[-1]].values[0])) / 1000.0
    ref = float(np.nanpercentile(spd, 95))
    scale = ref / (0.9 * spacing)  # m/s per km of arrow: the 95th percentile fills a cell
    xx, yy = np.meshgrid(x, y)
    q = ax.quiver(
        xx,
        yy,
        uu,
        vv,
        angles="xy",
        scale_units="xy",
        scale=scale,
        color="black",
        edgecolor="white",
        linewidth=0.4,
        width=0.0035,
        zorder=3,
    )
    key = _nice(ref)
    ax.quiverkey(q, 0.88, 1.015, key, f"{key:g} m s-1", labelpos="E", coordinates="axes", zorder=4)


# ---------------------------------------------------------------------------- public API
def plot_wind(
    path_or_ds,
    time=None,
    output: str | os.PathLike = "map.png",
    table=None,
    *,
    arrows: int = 20,
    figsize: tuple[float, float] = WIND_FIGSIZE,
    dpi: int = DPI,
) -> Path:
    """Map of the downscaled wind speed with direction arrows over a hillshade.

    Parameters
    ----------
    path_or_ds
        Output of :func:`devine_onnx.downscaling.downscale.downscale` (NetCDF or Zarr path, or Dataset)
        with ``wind_speed`` and ``eastward_wind``/``northward_wind`` (or ``x_wind``/
        ``y_wind``, or ``wind_from_direction``).
    time
        Time step to draw: ISO 8601 text or timestamp that must be in the file, or an integer
        index; default the first step.
    output
        Image to write (PNG unless the suffix says otherwise); ``figsize * dpi`` pixels.
    table
        Correction table (path or Dataset) whose ``elevation`` gives the hillshade; default the
        output's own ``elevation`` variable if it has one, else a plain grey background.
    arrows
        About this many arrows along the longer side of the map.

    Returns
    -------
    pathlib.Path
        ``output``.

    Raises
    ------
    InputFileError
        The file is missing, unreadable, or not a downscaled output.
    OptionError
        ``time`` is not in the file (the message gives the available range).
    OutputError
        The image cannot be written there.

    Notes
    -----
    Arrows are rotated from earth-relative to grid-relative components by the meridian
    convergence (docs/method.md §4), so they point along the wind on the projected map. Their length
    is proportional to the speed (see the key above the map).
    """
    out = _check_output(output)
    ds, label = _open(path_or_ds, "downscaled wind")
    if "wind_speed" not in ds.data_vars:
        found = ", ".join(sorted(map(str, ds.data_vars))) or "none"
        raise InputFileError(
            f"{label}: not a devine-onnx downscaled output (no wind_speed variable; found "
            f"{found}); give the file written by 'devine-onnx downscale'"
        )
    speed_all = ds["wind_speed"]
    _xy_names(speed_all, label)
    index, stamp = _select_time(speed_all, ds, time, label)

    def sel(da):
        if index is not None and "time" in da.dims:
            da = da.isel(time=index)
        while da.ndim > 2:
            da = da.isel({da.dims[0]: 0})
        return da.load()

    speed = _north_up(sel(speed_all))
    crs = _crs(ds, "wind_speed")
    if table is not None:
        elev = _elevation(table, "table")
    elif "elevation" in ds.data_vars or "elevation" in ds.coords:
        elev = _elevation(ds, label)
    else:
        elev = None
    comps = _grid_components(ds, sel, crs, label)

    from matplotlib.colors import Normalize

    fig = _figure(figsize, dpi)
    ax = fig.add_subplot()
    _draw_background(ax, elev)
    values = np.asarray(speed.values, dtype=np.float64)
    finite = values[np.isfinite(values)]
    vmax = float(np.percentile(finite, 99.5)) if finite.size else 1.0
    im = ax.imshow(
        values,
        cmap="viridis",
        norm=Normalize(vmin=0.0, vmax=max(vmax, 1e-6)),
        extent=_extent_km(speed),
        origin="upper",
        alpha=OVERLAY_ALPHA if elev is not None else 1.0,
        interpolation="nearest",
        zorder=1,
    )
    edged = _shade_edge_influence(ax, ds, values)
    units = speed_all.attrs.get("units", "m s-1")
    cbar = fig.colorbar(im, ax=ax, shrink=0.85, pad=0.02)
    cbar.set_label(f"wind speed ({units})")
    cbar.solids.set_alpha(1.0)
    if comps is not None:
        _quiver(ax, comps[0], comps[1], arrows)
    left, right, bottom, top = _extent_km(speed)
    ax.set_xlim(left, right)
    ax.set_ylim(bottom, top)
    ax.set_aspect("equal")
    crs_text = _crs_label(crs)
    ax.set_xlabel(f"x (km{crs_text})")
    ax.set_ylabel(f"y (km{crs_text})")
    when = (
        stamp.isoformat() if stamp is not None else (f"step {index}" if index is not None else "")
    )
    title = f"Downscaled wind speed ({units}) and direction" + (f", {when}" if when else "")
    engine = ds.attrs.get("table_engine_title")
    if engine:
        title += f"\n{engine}"
    if _synthetic(ds.attrs):
        title += "\nsynthetic model weights: demonstration only, NOT physical"
    if edged:
        title += f"\n{_EDGE_NOTE}"
    ax.set_title(title, loc="left", fontsize=11)
    return _save(fig, out, dpi)


def _angles_text(angles: np.ndarray) -> str:
    a = np.asarray(angles)
    if a.size == 0:
        return "none"
    if a.size > 2:
        steps = np.unique(np.diff(a))
        if steps.size == 1:
            return f"{a[0]:g} to {a[-1]:g} every {steps[0]:g}°"
    if a.size <= 12:
        return ", ".join(f"{v:g}" for v in a)
    return ", ".join(f"{v:g}" for v in a[:10]) + f", ... ({a.size} angles)"


def _direction_arrow(ax, angle: float) -> None:
    """Small arrow in the upper-left corner showing where the wind blows to (grid north)."""
    rad = math.radians(angle)
    dx, dy = -math.sin(rad), -math.cos(rad)  # blowing TO = from + 180°
    cx, cy, r = 0.1, 0.88, 0.06
    ax.annotate(
        "",
        xy=(cx + r * dx, cy + r * dy),
        xytext=(cx - r * dx, cy - r * dy),
        xycoords="axes fraction",
        arrowprops={"arrowstyle": "-|>", "color": "black", "lw": 2.0},
        zorder=5,
    )
    ax.text(
        cx,
        cy - r * abs(dy) - 0.035,
        f"from {angle:g}°",
        transform=ax.transAxes,
        ha="center",
        va="top",
        fontsize=9,
        bbox={"boxstyle": "round,pad=0.2", "fc": "white", "ec": "none", "alpha": 0.8},
        zorder=5,
    )


def plot_table(
    path_or_ds,
    angle: float = 270,
    output: str | os.PathLike = "table.png",
    *,
    figsize: tuple[float, float] = TABLE_FIGSIZE,
    dpi: int = DPI,
) -> Path:
    """Two-panel map of a correction table for one inflow direction.

    Left: ``acceleration`` (speed ratio, 1 = unchanged); right: ``alpha`` in degrees
    (positive = flow turned to the left), both over a hillshade of the table's ``elevation``.

    Parameters
    ----------
    path_or_ds
        Table written by :func:`devine_onnx.tables.build.compute_corrections` (path or Dataset).
    angle
        Meteorological FROM direction in degrees clockwise from grid north; must be one of the
        table's angles.
    output
        Image to write; ``figsize * dpi`` pixels.

    Returns
    -------
    pathlib.Path
        ``output``.

    Raises
    ------
    TableError
        The file is not a correction table.
    OptionError
        ``angle`` is not in the table (the message lists the available angles).
    """
    out = _check_output(output)
    ds, label = _open(path_or_ds, "correction table")
    if not {"acceleration", "alpha"} <= set(ds.data_vars):
        found = ", ".join(sorted(map(str, ds.data_vars))) or "none"
        raise TableError(
            f"{label}: not a devine-onnx correction table (no acceleration/alpha variables; "
            f"found {found}); give the file written by 'devine-onnx corrections'"
        )
    acc_all, alpha_all = ds["acceleration"], ds["alpha"]
    if "angle" not in acc_all.dims or "angle" not in ds.coords:
        raise TableError(f"{label}: acceleration has no angle dimension; not a correction table")
    _xy_names(acc_all, label)
    angles = np.asarray(ds["angle"].values)
    try:
        a = float(angle)
    except (TypeError, ValueError):
        raise OptionError(f"--angle {angle!r}: expected a number of degrees") from None
    hits = np.nonzero(np.isclose(angles.astype(np.float64), a))[0]
    if hits.size == 0:
        raise OptionError(
            f"--angle {angle:g}: not in {label}; it has angles {_angles_text(angles)}"
        )
    i = int(hits[0])
    acc = _north_up(acc_all.isel(angle=i).load())
    alpha = _north_up(alpha_all.isel(angle=i).load())
    alpha_units = str(alpha_all.attrs.get("units", "radian")).lower()
    alpha_deg = np.asarray(alpha.values, dtype=np.float64)
    if not alpha_units.startswith("deg"):
        alpha_deg = np.degrees(alpha_deg)
    elev = _elevation(ds, label) if "elevation" in ds.variables else None

    from matplotlib.colors import Normalize, TwoSlopeNorm

    fig = _figure(figsize, dpi)
    axes = fig.subplots(1, 2, sharex=True, sharey=True)
    extent = _extent_km(acc)
    crs_text = _crs_label(_crs(ds, "acceleration"))

    accv = np.asarray(acc.values, dtype=np.float64)
    finite = accv[np.isfinite(accv)]
    lo, hi = np.percentile(finite, [0.5, 99.5]) if finite.size else (0.0, 2.0)
    lo, hi = float(lo), float(hi)
    if lo < 1.0 < hi:
        acc_norm = TwoSlopeNorm(vcenter=1.0, vmin=lo, vmax=hi)
    else:
        acc_norm = Normalize(vmin=min(lo, 1.0), vmax=max(hi, 1.0 + 1e-6))
    fin_alpha = np.abs(alpha_deg[np.isfinite(alpha_deg)])
    amax = float(np.percentile(fin_alpha, 99.5)) if fin_alpha.size else 1.0
    amax = max(amax, 1e-3)
    panels = [
        (axes[0], accv, acc_norm, "RdBu_r", "acceleration (speed ratio, 1 = unchanged)"),
        (
            axes[1],
            alpha_deg,
            Normalize(vmin=-amax, vmax=amax),
            "PuOr",
            "deviation alpha (degrees, > 0 = turned left)",
        ),
    ]
    for ax, data, norm, cmap, name in panels:
        _draw_background(ax, elev)
        im = ax.imshow(
            data,
            cmap=cmap,
            norm=norm,
            extent=extent,
            origin="upper",
            alpha=OVERLAY_ALPHA if elev is not None else 1.0,
            interpolation="nearest",
            zorder=1,
        )
        edged = _shade_edge_influence(ax, ds, data)
        cbar = fig.colorbar(im, ax=ax, shrink=0.85, pad=0.02)
        cbar.set_label(name)
        cbar.solids.set_alpha(1.0)
        ax.set_xlim(extent[0], extent[1])
        ax.set_ylim(extent[2], extent[3])
        ax.set_aspect("equal")
        ax.set_xlabel(f"x (km{crs_text})")
        _direction_arrow(ax, float(angles[i]))
    axes[0].set_ylabel(f"y (km{crs_text})")
    axes[0].set_title("acceleration", loc="left")
    axes[1].set_title("alpha", loc="left")
    title = f"Correction table for wind from {angles[i]:g}° (grid north)"
    if ds.attrs.get("engine_title"):
        title += f"\n{ds.attrs['engine_title']}"
    if _synthetic(ds.attrs):
        title += " - synthetic model weights: demonstration only, NOT physical"
    if edged:
        title += f"\n{_EDGE_NOTE}"
    fig.suptitle(title, fontsize=12)
    return _save(fig, out, dpi)


def plot_file(
    path,
    output: str | os.PathLike,
    *,
    time=None,
    angle: float | None = None,
    table=None,
) -> tuple[str, Path]:
    """Plot a downscaled output (:func:`plot_wind`) or a table (:func:`plot_table`).

    The kind is detected from the file's variables: ``acceleration`` and ``alpha`` make a
    table, ``wind_speed`` a downscaled output.

    Returns
    -------
    (kind, path)
        ``"table"`` or ``"wind"``, and the image written.
    """
    _check_output(output)
    ds, label = _open(path, "downscaled wind or correction table")
    names = set(ds.data_vars)
    if {"acceleration", "alpha"} <= names:
        if time is not None:
            raise OptionError(
                f"--time {time}: {label} is a correction table, which has no time; use "
                "--angle DEGREES to choose the direction"
            )
        if table is not None:
            raise OptionError(f"--table: {label} is itself a correction table; omit --table")
        return "table", plot_table(path, 270 if angle is None else angle, output)
    if "wind_speed" in names:
        if angle is not None:
            raise OptionError(
                f"--angle {angle:g}: {label} is a downscaled output, not a correction table; "
                "use --time to choose the step"
            )
        return "wind", plot_wind(path, time=time, output=output, table=table)
    found = ", ".join(sorted(map(str, names))) or "none"
    raise InputFileError(
        f"{label}: neither a downscaled output (wind_speed) nor a correction table "
        f"(acceleration, alpha); found variables {found}"
    )
