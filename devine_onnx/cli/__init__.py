"""The ``devine-onnx`` command line.

Each command only parses its arguments, maps them onto the Python API's options
(``devine_onnx.tables``, ``devine_onnx.downscaling``, ``devine_onnx.demo``, ``devine_onnx.plot``,
``devine_onnx.diagnostics``, ``devine_onnx_convert``) and calls it; checks of what the options
mean together live in the library, so that Python callers get the same errors. Errors the user
can fix (:class:`~devine_onnx.errors.DevineError`) print one line ``error: ...`` on stderr and
exit with status 1, without a traceback unless ``--debug``; usage errors exit with status 2;
Ctrl-C prints ``interrupted`` and exits with status 130. Python warnings (NWP points outside the
hull, CPU fallback...) and WARNING records of the ``devine_onnx`` logger print as one line
``warning: ...`` on stderr; its INFO records (DEM trimming and resume notes, timings) as
``note: ...``, hidden by ``--quiet``. Output files may go into folders that do not exist yet:
every command creates the missing folders of the paths it writes.

Modules
-------
app
    The typer application :data:`app`, the error policy and :func:`main`.
options
    Option types and parsers shared by several commands (``Device``, ``QuietOpt``...).
convert, tables, downscale, evaluate, tools, export
    One module per command group; importing a module registers its commands.

Adding a command
----------------
Write ``devine_onnx/cli/<group>.py``::

    from .app import app, done, quiet_notes
    from .options import QuietOpt

    @app.command(epilog="[bold]Example[/bold]:\\n\\n  devine-onnx mycommand in.nc -o out.tif")
    def mycommand(..., quiet: QuietOpt = False) -> None:
        \"\"\"One-line summary shown in the command list.\"\"\"
        from devine_onnx.mypackage import run  # imported here: --help stays fast

        quiet_notes(quiet)
        result = run(...)
        done(quiet, f"wrote {output}")

then add ``"<group>"`` to :data:`COMMAND_MODULES` below, at the place where the command should
appear in ``devine-onnx --help``. Options shared by several commands go to ``options.py``.
"""

from __future__ import annotations

from importlib import import_module

from .app import app, main
from .options import parse_angles, parse_target

#: Command modules, in the order their commands are listed by ``devine-onnx --help``.
COMMAND_MODULES = ("convert", "tables", "downscale", "evaluate", "tools", "export")

for _module in COMMAND_MODULES:
    import_module(f"{__name__}.{_module}")
del _module

__all__ = ["COMMAND_MODULES", "app", "main", "parse_angles", "parse_target"]
