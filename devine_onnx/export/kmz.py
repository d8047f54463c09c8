"""KMZ for Google Earth: wind arrows coloured by speed, one folder per time step.

The KMZ (a zip) holds ``doc.kml`` and ``legend.png``. Each time step is a ``Folder`` with a
``TimeSpan`` from its time to the next step's (the last one lasts one time step), so Google
Earth's time slider plays the series. An arrow is a line drawn on the ground (shaft and head)
from the arrow's tail to its tip in the direction the wind blows TO; its length is proportional
to the speed (one scale for the whole file: the 99.5th percentile of the speed fills the
spacing between arrows) and its colour gives the speed class shown in the legend (the same
classes for every step). Arrow geometry is computed on the projected grid with grid-relative
components (see :meth:`~devine_onnx.export.source.MapSource.grid_wind`) and converted to
longitude/latitude (WGS 84) with pyproj.
"""

from __future__ import annotations

import io
import math
import zipfile
from pathlib import Path
from xml.sax.saxutils import escape

import numpy as np

__all__ = ["CLASSES", "write_kmz"]

#: Number of speed classes (colours) of the arrows.
CLASSES = 8
#: Colour map of the speed classes (bright enough over satellite imagery).
CMAP = "turbo"


def _kml_colour(rgba) -> str:
    """KML colour ``aabbggrr`` of a matplotlib RGBA tuple."""
    r, g, b, _ = (round(255 * c) for c in rgba)
    return f"ff{b:02x}{g:02x}{r:02x}"


def _legend_png(edges: np.ndarray, cmap) -> bytes:
    """A horizontal colour bar of the speed classes (PNG bytes)."""
    from matplotlib.colorbar import ColorbarBase
    from matplotlib.colors import BoundaryNorm
    from matplotlib.figure import Figure

    fig = Figure(figsize=(3.6, 0.75), dpi=100, layout="constrained")
    ax = fig.add_subplot()
    norm = BoundaryNorm(edges, cmap.N)
    ColorbarBase(ax, cmap=cmap, norm=norm, orientation="horizontal", ticks=edges)
    ax.set_xlabel("wind speed (m s-1)")
    buf = io.BytesIO()
    fig.savefig(buf, format="png", facecolor=(1, 1, 1, 0.85))
    return buf.getvalue()


def _arrow_points(x, y, u, v, length) -> np.ndarray:
    """(n, 5, 2) points of arrows centred on (x, y), along (u, v), of ``length``:
    tail, tip, left barb, tip, right barb."""
    speed = np.hypot(u, v)
    with np.errstate(invalid="ignore", divide="ignore"):
        ex, ey = u / speed, v / speed
    half = length / 2
    tail = np.stack([x - ex * half, y - ey * half], -1)
    tip = np.stack([x + ex * half, y + ey * half], -1)
    head = 0.35 * length
    pts = [tail, tip]
    for sign in (1, -1):
        c, s = math.cos(math.radians(155)), math.sin(math.radians(155)) * sign
        bx, by = ex * c - ey * s, ex * s + ey * c
        pts.append(np.stack([tip[:, 0] + bx * head, tip[:, 1] + by * head], -1))
        if sign == 1:
            pts.append(tip)
    return np.stack(pts, axis=1)


def write_kmz(src, folder: Path, single: Path | None, steps, arrows: int, pairs) -> None:
    """Write ``<stem>.kmz`` into ``folder`` (or ``single``); appends (final, partial)."""
    import matplotlib as mpl
    from pyproj import CRS, Transformer

    from devine_onnx.export.geotiff import iso_utc
    from devine_onnx.export.source import nice_step, utc_label
    from devine_onnx.io.atomic import temporary_file

    crs = src.crs if src.crs is not None else CRS.from_epsg(4326)
    to_ll = Transformer.from_crs(crs, "EPSG:4326", always_xy=True)
    ny, nx = src.shape
    stride = max(1, math.ceil(max(ny, nx) / max(int(arrows), 1)))
    rows = np.arange(stride // 2, ny, stride)
    cols = np.arange(stride // 2, nx, stride)
    xx, yy = np.meshgrid(src.x[cols], src.y[rows])
    xx, yy = xx.ravel(), yy.ravel()
    spacing = stride * src.spacing[0]
    top = src.value_range("wind_speed")[1] if "wind_speed" in src.variables() else 10.0
    top = top if np.isfinite(top) and top > 0 else 1.0
    step = nice_step(top / CLASSES)
    edges = step * np.arange(math.ceil(top / step - 1e-9) + 1)
    while edges.size - 1 > 2 * CLASSES:  # keep the number of colours readable
        step *= 2
        edges = step * np.arange(math.ceil(top / step - 1e-9) + 1)
    cmap = mpl.colormaps[CMAP].resampled(edges.size - 1)
    geographic = crs.is_geographic
    stamps = src.times

    styles = "".join(
        f'<Style id="s{k}"><LineStyle><color>{_kml_colour(cmap(k))}</color>'
        f"<width>2.5</width></LineStyle></Style>"
        for k in range(edges.size - 1)
    )
    parts = [
        '<?xml version="1.0" encoding="UTF-8"?>\n'
        '<kml xmlns="http://www.opengis.net/kml/2.2"><Document>'
        f"<name>{escape(src.stem)}</name><open>1</open>"
        f"<description>{escape(_description(src, edges))}</description>{styles}"
        "<ScreenOverlay><name>Legend: wind speed (m/s)</name><Icon><href>legend.png</href>"
        '</Icon><overlayXY x="0" y="0" xunits="fraction" yunits="fraction"/>'
        '<screenXY x="0.02" y="0.06" xunits="fraction" yunits="fraction"/>'
        '<size x="0" y="0" xunits="pixels" yunits="pixels"/></ScreenOverlay>'
    ]
    for n, i in enumerate(steps):
        comps = src.grid_wind(i)
        u = comps[0][np.ix_(rows, cols)].ravel()
        v = comps[1][np.ix_(rows, cols)].ravel()
        if "wind_speed" in src.variables():
            speed = src.field("wind_speed", i)[np.ix_(rows, cols)].ravel()
        else:
            speed = np.hypot(u, v)
        ok = np.isfinite(speed) & np.isfinite(u) & np.isfinite(v) & (np.hypot(u, v) > 0)
        if geographic:  # keep arrows straight on the ground: degrees of longitude are shorter
            u = u / np.cos(np.radians(yy))
        length = np.minimum(speed, top * 1.5) / top * 0.9 * spacing
        pts = _arrow_points(xx[ok], yy[ok], u[ok], v[ok], length[ok])
        lon, lat = to_ll.transform(pts[..., 0], pts[..., 1])
        klass = np.clip(np.searchsorted(edges, speed[ok], side="right") - 1, 0, edges.size - 2)
        if i is not None and stamps is not None:
            begin = stamps[i]
            if n + 1 < len(steps) and stamps[steps[n + 1]] > begin:
                end = stamps[steps[n + 1]]
            elif stamps.size > 1:
                end = begin + np.median(np.diff(stamps.values))
            else:
                end = begin + np.timedelta64(1, "h")
            name = utc_label(begin)
            span = f"<TimeSpan><begin>{iso_utc(begin)}</begin><end>{iso_utc(end)}</end></TimeSpan>"
        else:
            name, span = "wind", ""
        marks = []
        for k in range(lon.shape[0]):
            coords = " ".join(f"{a:.6f},{b:.6f}" for a, b in zip(lon[k], lat[k], strict=True))
            marks.append(
                f"<Placemark><styleUrl>#s{klass[k]}</styleUrl><LineString><tessellate>1"
                f"</tessellate><coordinates>{coords}</coordinates></LineString></Placemark>"
            )
        parts.append(f"<Folder><name>{escape(name)}</name>{span}{''.join(marks)}</Folder>")
    parts.append("</Document></kml>\n")

    final = single or folder / f"{src.stem}.kmz"
    tmp = temporary_file(final)  # unique, O_EXCL: never a planted file or link
    pairs.append((final, tmp))
    legend = _legend_png(edges, cmap)
    with zipfile.ZipFile(tmp, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("doc.kml", "".join(parts))  # the first entry: what Google Earth opens
        zf.writestr("legend.png", legend)


def _description(src, edges) -> str:
    text = (
        f"Downscaled wind from {src.label}: arrows point where the wind blows TO; length "
        f"proportional to the speed, colour = speed class ({edges[0]:g} to {edges[-1]:g} m/s, "
        "the top class includes faster winds). Times are UTC."
    )
    if src.engine_title:
        text += f" {src.engine_title}."
    if src.synthetic:
        text += " Synthetic model weights: demonstration only, NOT physical."
    return text
