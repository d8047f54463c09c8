"""Quick-look maps of downscaled wind and correction tables; small multiples and animations.

Honest colours: the data are drawn opaque, with nothing blended into them, so every data pixel
has exactly the colour the colour bar gives its value. Terrain is shown by thin elevation
contour lines, the cells whose values the table flags as influenced by the DEM's edge
(``edge_influence = 1``, docs/method.md §9.1) by a dashed outline, and an optional lon/lat
graticule by dotted lines; NaN (no data) is left transparent over a light grey background.

Comparable frames: the colour range of a variable is fixed over the whole file (the 0.5th to
99.5th percentiles, rounded outwards; ``vmin``/``vmax`` override it), and so is the arrow scale
and its key, so that the maps of several time steps, the panels of small multiples and the
frames of an animation can be compared by eye. Times are UTC.

matplotlib is imported inside the functions only, and figures are drawn with the object API
(:class:`matplotlib.figure.Figure`, rendered by Agg), so that importing this module is cheap and
never changes pyplot's backend or state. Images are written atomically.

Direction arrows are drawn in grid coordinates: earth-relative components
(``eastward_wind``, ``northward_wind``) are rotated into grid-relative ones by the meridian
convergence of the output's CRS at each arrow (docs/method.md §4), so that an arrow points where
the wind blows on the map.
"""

from __future__ import annotations

import math
import os
from pathlib import Path

import numpy as np

from .errors import InputFileError, OptionError, OutputError, TableError
from .export.source import MapSource, nice_step, open_source, utc_label
from .io.atomic import atomic_output, check_writable, remove_path

__all__ = ["animate_wind", "plot_file", "plot_table", "plot_wind"]

#: Default image sizes (inches) and resolution; the PNG is exactly figsize * dpi pixels.
WIND_FIGSIZE = (9.0, 7.5)
TABLE_FIGSIZE = (14.0, 6.0)
DPI = 100
#: Most panels of small multiples (more time steps: use an animation).
MAX_PANELS = 16
#: Background where the data are NaN.
NODATA_COLOUR = "0.88"
#: Colour maps: diverging ones for signed variables, a cyclic one for directions.
_DIVERGING = {
    "upward_air_velocity": "RdBu_r",
    "eastward_wind": "RdBu_r",
    "northward_wind": "RdBu_r",
    "x_wind": "RdBu_r",
    "y_wind": "RdBu_r",
    "vertical": "RdBu_r",
    "alpha": "PuOr",
}
_LONG_NAMES = {
    "wind_speed": "wind speed",
    "wind_from_direction": "wind from-direction",
    "upward_air_velocity": "upward air velocity",
    "eastward_wind": "eastward wind",
    "northward_wind": "northward wind",
    "acceleration": "acceleration (speed ratio, 1 = unchanged)",
    "alpha": "deviation alpha (> 0 = turned left)",
    "vertical": "vertical ratio (w / inflow speed)",
    "elevation": "elevation",
}
_EDGE_NOTE = "dashed outline: values influenced by the DEM's edge (edge_influence = 1)"


# ---------------------------------------------------------------------------- small helpers
def _figure(figsize, dpi, notes: int = 0):
    """Constrained-layout figure with a strip at the bottom for the arrow key and notes."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=figsize, dpi=dpi, layout="constrained")
    strip = min(0.3, (0.12 + 0.17 * max(notes, 1)) / figsize[1])
    fig.get_layout_engine().set(rect=(0.0, strip, 1.0, 1.0 - strip))
    fig._devine_strip = strip  # where the key and the notes go (figure fraction)
    return fig


def _footer(fig, notes: list[str], left: float) -> None:
    if notes:
        fig.text(left, fig._devine_strip / 2, "\n".join(notes), fontsize=8, va="center")


def _check_output(output, formats=None) -> Path:
    """Refuse a folder, an unknown image suffix or an unwritable folder before any work."""
    from matplotlib.backend_bases import FigureCanvasBase

    out = Path(output)
    if out.is_dir():
        raise OutputError(f"{out}: is a folder; give an image file name such as map.png")
    fmt = out.suffix.lstrip(".").lower() or "png"
    known = formats or FigureCanvasBase.get_supported_filetypes()
    if fmt not in known:
        raise OutputError(
            f"{out}: unsupported {'animation' if formats else 'image'} format {fmt!r}; use "
            + (", ".join(f".{f}" for f in formats) if formats else ".png (or .pdf, .svg, .jpg)")
        )
    return check_writable(out)


def _save(fig, out: Path, dpi) -> Path:
    fmt = out.suffix.lstrip(".").lower() or "png"
    with atomic_output(out) as tmp:
        fig.savefig(tmp, format=fmt, dpi=dpi)
    return out


def _units(src: MapSource) -> tuple[float, str]:
    """(divisor, name) of the map axes: km for a projected CRS in metres, else CRS units."""
    crs = src.crs
    if crs is not None and crs.is_geographic:
        return 1.0, "degrees"
    return 1000.0, "km"


def _crs_label(crs) -> str:
    if crs is None:
        return ""
    auth = crs.to_authority(min_confidence=70)
    return f", {auth[0]}:{auth[1]}" if auth else f", {crs.name}"


def _round_out(value: float) -> float:
    """``value`` rounded away from zero to a step of 1, 2 or 5 times a power of ten."""
    if value == 0 or not np.isfinite(value):
        return value
    step = nice_step(abs(value) / 5)
    return math.copysign(math.ceil(abs(value) / step - 1e-9) * step, value)


def _norm(src: MapSource, var: str, vmin, vmax):
    """(Normalize, colormap) of ``var``: a range fixed over the whole file unless given."""
    import matplotlib as mpl
    from matplotlib.colors import Normalize

    lo, hi = src.value_range(var)
    if var == "wind_speed":
        lo, hi, cmap = 0.0, _round_out(hi), "viridis"
    elif var == "wind_from_direction":
        lo, hi, cmap = 0.0, 360.0, "twilight_shifted"
    elif var == "acceleration":
        d = _round_out(max(abs(lo - 1.0), abs(hi - 1.0), 1e-3))
        lo, hi, cmap = 1.0 - d, 1.0 + d, "RdBu_r"
    elif var in _DIVERGING:
        m = _round_out(max(abs(lo), abs(hi), 1e-6))
        lo, hi, cmap = -m, m, _DIVERGING[var]
    elif var == "elevation":
        cmap = "terrain"
    else:
        cmap = "viridis"
    lo = float(vmin) if vmin is not None else lo
    hi = float(vmax) if vmax is not None else hi
    if not (np.isfinite(lo) and np.isfinite(hi)) or lo >= hi:
        if vmin is not None or vmax is not None:
            raise OptionError(
                f"--vmin {lo:g} --vmax {hi:g}: vmin must be below vmax (finite numbers)"
            )
        hi = lo + 1.0
    cm = mpl.colormaps[cmap].with_extremes(bad=(0.0, 0.0, 0.0, 0.0))
    return Normalize(vmin=lo, vmax=hi), cm


def _title_var(src: MapSource, var: str) -> str:
    units = src.units(var)
    name = _LONG_NAMES.get(var, var)
    return f"{name} ({units})" if units and units != "1" else name


# ---------------------------------------------------------------------------- map layers
def _contours(ax, src: MapSource, div: float, terrain) -> str | None:
    """Thin elevation contours of ``terrain`` = (x, y, z) north-up, or None; returns the note
    that explains them."""
    if terrain is None or not np.isfinite(terrain[2]).any():
        return None
    from matplotlib.ticker import MaxNLocator

    x, y, z = terrain
    levels = MaxNLocator(nbins=8).tick_values(np.nanmin(z), np.nanmax(z))
    levels = levels[(levels > np.nanmin(z)) & (levels < np.nanmax(z))]
    if levels.size == 0:
        return None
    ax.contour(
        x / div, y / div, z, levels=levels, colors="0.15", linewidths=0.5, alpha=0.6, zorder=2
    )
    step = float(levels[1] - levels[0]) if levels.size > 1 else float(levels[0])
    return f"grey lines: terrain elevation every {step:g} m"


def _edge_outline(ax, src: MapSource, div: float) -> str | None:
    flag = src.static("edge_influence")
    if flag is None or not (flag == 1).any():
        return None
    ax.contour(
        src.x / div,
        src.y / div,
        (flag == 1).astype(float),
        levels=[0.5],
        colors="black",
        linewidths=1.0,
        linestyles="--",
        zorder=3,
    )
    return _EDGE_NOTE


def _graticule(ax, src: MapSource, div: float) -> str | None:
    """Dotted lon/lat lines with labels (projected grids only)."""
    if src.crs is None or src.crs.is_geographic:
        ax.grid(True, linestyle=":", linewidth=0.6, color="0.3")
        return None
    from matplotlib.ticker import MaxNLocator
    from pyproj import Transformer

    ny, nx = src.shape
    sy, sx = max(1, ny // 100), max(1, nx // 100)
    xx, yy = np.meshgrid(src.x[::sx], src.y[::sy])
    to_ll = Transformer.from_crs(src.crs, "EPSG:4326", always_xy=True)
    lon, lat = to_ll.transform(xx, yy)
    for values, suffix in ((lon, "°E"), (lat, "°N")):
        levels = MaxNLocator(nbins=4, steps=[1, 2, 2.5, 5, 10]).tick_values(
            values.min(), values.max()
        )
        levels = levels[(levels > values.min()) & (levels < values.max())]
        if levels.size == 0:
            continue
        cs = ax.contour(
            xx / div,
            yy / div,
            values,
            levels=levels,
            colors="0.25",
            linewidths=0.7,
            linestyles=":",
            zorder=3,
        )
        ax.clabel(cs, fmt=lambda v, s=suffix: f"{v:g}{s}", fontsize=7, inline=True)
    return None


def _grid_components(src: MapSource, index):
    """Grid-relative (u, v) in m/s of time step ``index``, north-up, or None."""
    return src.grid_wind(index)


class _Arrows:
    """Arrow positions, scale and key fixed over the whole file (comparable frames)."""

    def __init__(self, src: MapSource, arrows: int, div: float):
        ny, nx = src.shape
        self.step = max(1, math.ceil(max(ny, nx) / max(int(arrows), 1)))
        self.rows = np.arange(self.step // 2, ny, self.step)
        self.cols = np.arange(self.step // 2, nx, self.step)
        self.xx, self.yy = np.meshgrid(src.x[self.cols] / div, src.y[self.rows] / div)
        if "wind_speed" in src.variables():
            ref = src.value_range("wind_speed")[1]
        else:
            ref = 10.0
        self.ref = ref if np.isfinite(ref) and ref > 0 else 1.0
        spacing = self.step * src.spacing[0] / div
        self.scale = self.ref / (0.9 * spacing)  # m/s per map unit: the 99.5th pct fills a cell
        self.key = nice_step(self.ref)

    def sample(self, u, v):
        return u[np.ix_(self.rows, self.cols)], v[np.ix_(self.rows, self.cols)]

    def draw(self, ax, u, v):
        uu, vv = self.sample(u, v)
        return ax.quiver(
            self.xx,
            self.yy,
            uu,
            vv,
            angles="xy",
            scale_units="xy",
            scale=self.scale,
            color="black",
            edgecolor="white",
            linewidth=0.4,
            units="inches",
            width=0.018,
            zorder=4,
        )

    def draw_key(self, fig, q) -> float:
        """Key in the figure's bottom strip (never over a title); returns where notes start."""
        y = fig._devine_strip / 2
        q.axes.quiverkey(
            q,
            0.03,
            y,
            self.key,
            f"{self.key:g} m s-1",
            labelpos="E",
            coordinates="figure",
            zorder=5,
        )
        return 0.2


def _axes_setup(ax, src: MapSource, div: float, unit: str, left_label=True) -> None:
    left, right, bottom, top = (v / div for v in src.extent)
    ax.set_facecolor(NODATA_COLOUR)
    ax.set_xlim(left, right)
    ax.set_ylim(bottom, top)
    ax.set_aspect("equal")
    crs_text = _crs_label(src.crs)
    ax.set_xlabel(f"x ({unit}{crs_text})")
    if left_label:
        ax.set_ylabel(f"y ({unit}{crs_text})")


def _image(ax, src: MapSource, values, norm, cmap, div):
    return ax.imshow(
        values,
        cmap=cmap,
        norm=norm,
        extent=[v / div for v in src.extent],
        origin="upper",
        interpolation="nearest",
        zorder=1,
    )


def _elevation(src: MapSource, table):
    """(x, y, elevation) north-up for the contours: from ``table`` if given (on its own grid,
    e.g. finer than a coarsened output), else the file's own ``elevation``, else None."""
    if table is None:
        z = src.static("elevation")
        return None if z is None else (src.x, src.y, z)
    tsrc = open_source(table, "correction table")
    try:
        z = tsrc.static("elevation") if "elevation" in tsrc.dataset.variables else None
        x, y = tsrc.x, tsrc.y
    finally:
        if isinstance(table, str | os.PathLike):
            tsrc.close()
    if z is None:
        raise TableError(
            f"{tsrc.label}: no elevation variable to draw the terrain; give the correction "
            "table written by 'devine-onnx corrections' with --table"
        )
    return x, y, z


def _wind_source(path_or_ds) -> MapSource:
    src = open_source(path_or_ds, "downscaled wind")
    if src.kind != "wind" or "wind_speed" not in src.variables():
        found = ", ".join(src.variables()) or "none"
        raise InputFileError(
            f"{src.label}: not a devine-onnx downscaled output (no wind_speed variable; found "
            f"{found}); give the file written by 'devine-onnx downscale'"
        )
    src.warn_if_synthetic("the map", stacklevel=3)  # before drawing, not after
    return src


def _header(src: MapSource, text: str) -> str:
    if src.engine_title:
        text += f"\n{src.engine_title}"
    if src.synthetic:
        text += "\nsynthetic model weights: demonstration only, NOT physical"
    return text


def _grid_shape(n: int) -> tuple[int, int]:
    ncols = math.ceil(math.sqrt(n))
    return math.ceil(n / ncols), ncols


# ---------------------------------------------------------------------------- public API
def plot_wind(
    path_or_ds,
    time=None,
    output: str | os.PathLike = "map.png",
    table=None,
    *,
    var: str = "wind_speed",
    vmin: float | None = None,
    vmax: float | None = None,
    arrows: int = 20,
    graticule: bool = False,
    figsize: tuple[float, float] | None = None,
    dpi: int = DPI,
) -> Path:
    """Map of a downscaled variable with direction arrows; several times = small multiples.

    Parameters
    ----------
    path_or_ds
        Output of :func:`devine_onnx.downscale` (NetCDF or Zarr path, or Dataset) with
        ``wind_speed`` and ``eastward_wind``/``northward_wind`` (or ``x_wind``/``y_wind``, or
        ``wind_from_direction``) for the arrows.
    time
        Time step(s) to draw: ISO 8601 text or a timestamp that must be in the file (naive
        times are UTC), an integer index, ``"START/END"`` for every step in an interval, or a
        list of these; default the first step. Several steps make small multiples (at most
        :data:`MAX_PANELS`) sharing one colour bar.
    output
        Image to write (PNG unless the suffix says otherwise); ``figsize * dpi`` pixels.
    table
        Correction table (path or Dataset) whose ``elevation`` gives the terrain contours;
        default the output's own ``elevation`` variable if it has one.
    var
        Variable to colour: ``wind_speed`` (m/s, default), ``wind_from_direction`` (degrees,
        cyclic colours), ``upward_air_velocity`` (m/s, diverging colours) or any other map
        variable of the file.
    vmin, vmax
        Colour range; default fixed over the whole file (0.5th-99.5th percentile rounded
        outwards; 0 to the top for speed, symmetric about 0 for signed variables).
    arrows
        About this many arrows along the longer side of the map (0: none).
    graticule
        Draw dotted longitude/latitude lines.
    figsize, dpi
        Image size in inches (default 9 x 7.5 for one map, larger for small multiples) and
        resolution.

    Returns
    -------
    pathlib.Path
        ``output``.

    Raises
    ------
    InputFileError
        The file is missing, unreadable, or not a downscaled output.
    OptionError
        ``time`` is not in the file (the message gives the available range), ``var`` is not
        a variable of the file, ``vmin >= vmax``, too many panels.
    OutputError
        The image cannot be written there.

    Notes
    -----
    Arrows are rotated from earth-relative to grid-relative components by the meridian
    convergence (docs/method.md §4), so they point along the wind on the projected map. Their
    length is proportional to the speed with one scale for the whole file (key below the map).
    """
    out = _check_output(output)
    src = _wind_source(path_or_ds)
    src.check_variable(var)
    indices = [None]
    if src.has_time(var) or (time is not None and src.times is not None):
        indices = src.time_indices(time) if time is not None else [0]
    if len(indices) > MAX_PANELS:
        raise OptionError(
            f"--time: {len(indices)} steps are too many panels (at most {MAX_PANELS}); give "
            "fewer times or make an animation with --animate out.gif"
        )
    elev = _elevation(src, table)
    norm, cmap = _norm(src, var, vmin, vmax)
    div, unit = _units(src)
    nrows, ncols = _grid_shape(len(indices))
    if figsize is None:
        figsize = WIND_FIGSIZE if len(indices) == 1 else (3.6 * ncols + 1.6, 3.2 * nrows + 1.6)
    notes = []
    fig = _figure(figsize, dpi, notes=3)
    axes = fig.subplots(nrows, ncols, squeeze=False, sharex=True, sharey=True).ravel()
    for ax in axes[len(indices) :]:
        ax.set_visible(False)
    arrow_set = _Arrows(src, arrows, div) if arrows else None
    quiver = None
    stamps = src.times
    for k, (ax, index) in enumerate(zip(axes, indices, strict=False)):
        im = _image(ax, src, src.field(var, index), norm, cmap, div)
        contour_note = _contours(ax, src, div, elev)
        edge_note = _edge_outline(ax, src, div)
        if graticule:
            _graticule(ax, src, div)
        if arrow_set is not None:
            comps = _grid_components(src, index)
            if comps is not None:
                quiver = arrow_set.draw(ax, *comps)
        _axes_setup(ax, src, div, unit, left_label=k % ncols == 0)
        if k // ncols != nrows - 1 and len(indices) > 1:
            ax.set_xlabel("")
        when = utc_label(stamps[index]) if stamps is not None and index is not None else ""
        if len(indices) > 1:
            ax.set_title(when, fontsize=10)
    notes = [n for n in (contour_note, edge_note) if n]
    cbar = fig.colorbar(im, ax=list(axes[: len(indices)]), shrink=0.85, pad=0.02)
    cbar.set_label(_title_var(src, var))
    title = f"Downscaled {_title_var(src, var)}" + (" and direction" if quiver is not None else "")
    if len(indices) == 1 and indices[0] is not None and stamps is not None:
        title += f", {utc_label(stamps[indices[0]])}"
    title = _header(src, title)
    if len(indices) == 1:
        axes[0].set_title(title, loc="left", fontsize=11)
    else:
        fig.suptitle(title, fontsize=12)
    left = arrow_set.draw_key(fig, quiver) if quiver is not None else 0.03
    _footer(fig, notes, left)
    return _save(fig, out, dpi)


def animate_wind(
    path_or_ds,
    output: str | os.PathLike = "wind.gif",
    time=None,
    table=None,
    *,
    var: str = "wind_speed",
    vmin: float | None = None,
    vmax: float | None = None,
    arrows: int = 20,
    graticule: bool = False,
    fps: float = 4.0,
    figsize: tuple[float, float] = WIND_FIGSIZE,
    dpi: int = DPI,
) -> Path:
    """Animation (GIF, or MP4 where ffmpeg is installed) of a downscaled variable over time.

    Every frame has the same colour range and arrow scale (see :func:`plot_wind`, whose
    parameters these are); ``time`` (default every step) selects the frames, e.g.
    ``"2026-01-15T00:00/2026-01-15T23:00"``; ``fps`` is frames per second.

    Raises
    ------
    OptionError
        As :func:`plot_wind`; ``.mp4`` without ffmpeg on the PATH.
    OutputError
        Not a ``.gif``/``.mp4`` name or not writable.
    """
    from matplotlib import animation

    out = _check_output(output, formats=("gif", "mp4"))
    if out.suffix.lower() == ".mp4" and not animation.writers.is_available("ffmpeg"):
        raise OptionError(
            f"--animate {out}: MP4 needs ffmpeg on the PATH, which was not found; write a .gif"
        )
    src = _wind_source(path_or_ds)
    src.check_variable(var)
    if not src.has_time(var):
        raise OptionError(f"--animate: {var} of {src.label} has no time dimension")
    indices = src.time_indices(time)
    elev = _elevation(src, table)
    norm, cmap = _norm(src, var, vmin, vmax)
    div, unit = _units(src)
    stamps = src.times
    fig = _figure(figsize, dpi, notes=2)
    ax = fig.add_subplot()
    im = _image(ax, src, src.field(var, indices[0]), norm, cmap, div)
    notes = [n for n in (_contours(ax, src, div, elev), _edge_outline(ax, src, div)) if n]
    if graticule:
        _graticule(ax, src, div)
    arrow_set = _Arrows(src, arrows, div) if arrows else None
    comps = _grid_components(src, indices[0]) if arrow_set is not None else None
    quiver = arrow_set.draw(ax, *comps) if comps is not None else None
    _axes_setup(ax, src, div, unit)
    base = _header(src, f"Downscaled {_title_var(src, var)}")
    fig.colorbar(im, ax=ax, shrink=0.85, pad=0.02).set_label(_title_var(src, var))

    def when(i) -> str:
        return utc_label(stamps[i]) if stamps is not None else f"step {i}"

    title = ax.set_title(f"{base}, {when(indices[0])}", loc="left", fontsize=11)
    left = arrow_set.draw_key(fig, quiver) if quiver is not None else 0.03
    _footer(fig, notes, left)

    def update(i):
        im.set_data(src.field(var, i))
        if quiver is not None:
            quiver.set_UVC(*arrow_set.sample(*_grid_components(src, i)))
        title.set_text(f"{base}, {when(i)}")
        return ()

    anim = animation.FuncAnimation(fig, update, frames=indices, blit=False, repeat=False)
    if out.suffix.lower() == ".gif":
        writer = animation.PillowWriter(fps=fps)
    else:
        writer = animation.FFMpegWriter(fps=fps)
    with atomic_output(out) as tmp:
        # The writers pick the format from the suffix: give the temporary name the same one.
        work = tmp.with_name(tmp.name + out.suffix)
        try:
            anim.save(str(work), writer=writer, dpi=dpi)
            os.replace(work, tmp)
        finally:
            remove_path(work)
    return out


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
    var: str | None = None,
    vmin: float | None = None,
    vmax: float | None = None,
    graticule: bool = False,
    figsize: tuple[float, float] | None = None,
    dpi: int = DPI,
) -> Path:
    """Map of a correction table for one inflow direction.

    By default two panels: ``acceleration`` (speed ratio, 1 = unchanged) and ``alpha`` in
    degrees (positive = flow turned to the left); ``var`` draws one of them (or ``vertical``)
    alone. Colour ranges are fixed over all directions of the table.

    Parameters
    ----------
    path_or_ds
        Table written by ``devine-onnx corrections`` (path, Dataset or
        :class:`~devine_onnx.tables.table.CorrectionTable`).
    angle
        Meteorological FROM direction in degrees clockwise from grid north; must be one of the
        table's angles.
    output
        Image to write; ``figsize * dpi`` pixels (default 14 x 6 inches for two panels).
    var, vmin, vmax, graticule
        As :func:`plot_wind`.

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
    src = open_source(path_or_ds, "correction table")
    if src.kind != "table":
        found = ", ".join(src.variables()) or "none"
        raise TableError(
            f"{src.label}: not a devine-onnx correction table (no acceleration/alpha variables; "
            f"found {found}); give the file written by 'devine-onnx corrections'"
        )
    src.warn_if_synthetic("the map", stacklevel=2)  # before drawing, not after
    names = [src.check_variable(var)] if var else ["acceleration", "alpha"]
    if (vmin is not None or vmax is not None) and len(names) > 1:
        raise OptionError("--vmin/--vmax: give --var acceleration or --var alpha with them")
    fields = {n: src.field(n, angle=angle) for n in names}  # checks the angle
    a = float(angle) % 360.0
    z = src.static("elevation")
    elev = None if z is None else (src.x, src.y, z)
    div, unit = _units(src)
    if figsize is None:
        figsize = TABLE_FIGSIZE if len(names) > 1 else WIND_FIGSIZE
    fig = _figure(figsize, dpi, notes=2)
    axes = fig.subplots(1, len(names), sharex=True, sharey=True, squeeze=False).ravel()
    notes: list[str] = []
    for k, (ax, name) in enumerate(zip(axes, names, strict=True)):
        norm, cmap = _norm(src, name, vmin, vmax)
        im = _image(ax, src, fields[name], norm, cmap, div)
        notes = [n for n in (_contours(ax, src, div, elev), _edge_outline(ax, src, div)) if n]
        if graticule:
            _graticule(ax, src, div)
        cbar = fig.colorbar(im, ax=ax, shrink=0.85, pad=0.02)
        cbar.set_label(_title_var(src, name))
        _axes_setup(ax, src, div, unit, left_label=k == 0)
        _direction_arrow(ax, a)
        ax.set_title(name, loc="left")
    title = _header(src, f"Correction table for wind from {a:g}° (grid north)")
    fig.suptitle(title, fontsize=12)
    _footer(fig, notes, 0.03)
    return _save(fig, out, dpi)


def plot_file(
    path,
    output: str | os.PathLike | None = None,
    *,
    time=None,
    angle: float | None = None,
    table=None,
    var: str | None = None,
    vmin: float | None = None,
    vmax: float | None = None,
    arrows: int = 20,
    graticule: bool = False,
    animate: str | os.PathLike | None = None,
) -> tuple[str, Path]:
    """Plot a downscaled output (:func:`plot_wind`, :func:`animate_wind`) or a table
    (:func:`plot_table`).

    The kind is detected from the file's variables: ``acceleration`` and ``alpha`` make a
    table, ``wind_speed`` a downscaled output. ``animate`` (a ``.gif`` or ``.mp4``) makes an
    animation of the output over ``time`` (default every step) instead of an image.

    Returns
    -------
    (kind, path)
        ``"table"``, ``"wind"`` or ``"animation"``, and the file written.
    """
    if (output is None) == (animate is None):
        raise OptionError("give either -o/--output IMAGE or --animate GIF_OR_MP4")
    if animate is not None:
        _check_output(animate, formats=("gif", "mp4"))
    else:
        _check_output(output)
    src = open_source(path)
    try:
        return _plot_source(
            src, output, time, angle, table, var, vmin, vmax, arrows, graticule, animate
        )
    finally:
        if isinstance(path, str | os.PathLike):  # opened here: closed here
            src.close()


def _plot_source(src, output, time, angle, table, var, vmin, vmax, arrows, graticule, animate):
    if src.kind == "table":
        if time is not None:
            raise OptionError(
                f"--time {time}: {src.label} is a correction table, which has no time; use "
                "--angle DEGREES to choose the direction"
            )
        if table is not None:
            raise OptionError(f"--table: {src.label} is itself a correction table; omit --table")
        if animate is not None:
            raise OptionError(f"--animate: {src.label} is a correction table, which has no time")
        path = plot_table(
            src,
            270 if angle is None else angle,
            output,
            var=var,
            vmin=vmin,
            vmax=vmax,
            graticule=graticule,
        )
        return "table", path
    if angle is not None:
        raise OptionError(
            f"--angle {angle:g}: {src.label} is a downscaled output, not a correction table; "
            "use --time to choose the step"
        )
    kwargs = dict(
        table=table,
        var=var or "wind_speed",
        vmin=vmin,
        vmax=vmax,
        arrows=arrows,
        graticule=graticule,
    )
    if animate is not None:
        return "animation", animate_wind(src, animate, time=time, **kwargs)
    return "wind", plot_wind(src, time=time, output=output, **kwargs)
