"""The typer application of ``devine-onnx``: error handling, console output, entry point.

Every command module of :mod:`devine_onnx.cli` registers its commands on :data:`app` with
``@app.command(...)``. This module owns what all commands share: the one-line error policy
(:class:`CommandGroup`), warnings and log records printed as ``warning:``/``note:`` lines,
``--version``/``--debug`` and :func:`main`.
"""

from __future__ import annotations

import logging
import os
import sys
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated

import typer
from typer.core import TyperGroup

from devine_onnx._version import __version__
from devine_onnx.errors import DevineError, cli_spelling

_PACKAGE_DIR = str(Path(__file__).resolve().parent.parent)
_NOISY = (DeprecationWarning, PendingDeprecationWarning, FutureWarning, RuntimeWarning)
_NUMPY_NOTICES = ("encountered", "empty slice", "Degrees of freedom")


def _one_line(text: str) -> str:
    return " ".join(str(text).split())


def echo_error(text: str) -> None:
    """Print ``text`` as one line on stderr."""
    typer.echo(_one_line(text), err=True)


def _hidden(message: str, category: type[Warning], filename: str) -> bool:
    """Library noise hidden without ``--debug``.

    Shown: warning classes defined in devine_onnx, plain RuntimeWarnings raised by
    devine_onnx code (except numpy's floating-point notices, which carry the caller's file
    name), and any other category that is not deprecation/future/runtime noise.
    """
    if getattr(category, "__module__", "").startswith("devine_onnx"):
        return False
    if category is RuntimeWarning and filename.startswith(_PACKAGE_DIR):
        return any(p in message for p in _NUMPY_NOTICES)
    return issubclass(category, _NOISY)


@contextmanager
def _warnings_to_stderr(debug: bool) -> Iterator[None]:
    """Print each warning as one ``warning: ...`` line on stderr.

    Library deprecation/future/runtime warnings (numpy's "all-NaN slice"...) are hidden unless
    ``--debug``; every warning class defined by devine_onnx is shown.
    """

    def show(message, category, filename, lineno, file=None, line=None):
        if not debug and _hidden(str(message), category, str(filename)):
            return
        echo_error(f"warning: {message}")

    with warnings.catch_warnings():
        warnings.simplefilter("default")
        warnings.showwarning = show
        yield


class _LineHandler(logging.Handler):
    """Log records of the ``devine_onnx`` logger as one line on stderr.

    INFO records (DEM trimming notes, resume notes...) print as ``note: ...``; WARNING and
    above as ``warning: ...``. Long commands raise the level to WARNING with ``--quiet``.
    """

    def emit(self, record: logging.LogRecord) -> None:
        try:
            prefix = "warning" if record.levelno >= logging.WARNING else "note"
            echo_error(f"{prefix}: {record.getMessage()}")
        except Exception:  # noqa: BLE001 - logging must never break the command
            self.handleError(record)


_HANDLER = _LineHandler(level=logging.INFO)


def quiet_notes(quiet: bool) -> None:
    """With ``--quiet`` only warnings are printed, not notes."""
    _HANDLER.setLevel(logging.WARNING if quiet else logging.INFO)


@contextmanager
def _log_to_stderr(debug: bool) -> Iterator[None]:
    logger = logging.getLogger("devine_onnx")
    old_level, old_propagate = logger.level, logger.propagate
    _HANDLER.setLevel(logging.DEBUG if debug else logging.INFO)
    logger.addHandler(_HANDLER)
    logger.setLevel(logging.DEBUG if debug else logging.INFO)
    logger.propagate = False
    try:
        yield
    finally:
        logger.removeHandler(_HANDLER)
        logger.setLevel(old_level)
        logger.propagate = old_propagate


def _passthrough() -> tuple[type[BaseException], ...]:
    """Exceptions that typer/click handle themselves (usage errors: exit 2; Exit; Abort)."""
    types: list[type[BaseException]] = [typer.Exit, typer.Abort, typer.BadParameter]
    if hasattr(typer, "TyperException"):  # typer >= 0.2x vendors click
        types.append(typer.TyperException)
    try:  # older typer uses click itself
        import click

        types += [click.ClickException, click.exceptions.Exit, click.Abort]
    except ImportError:  # pragma: no cover
        pass
    return tuple(types)


_PASSTHROUGH = _passthrough()


def _plain_flags(command, ctx) -> None:
    """Boolean flags take no value: no ``<bool>`` placeholder in their help line."""
    for param in command.get_params(ctx):
        if getattr(param, "is_flag", False) and param.metavar is None:
            param.metavar = ""


class CommandGroup(TyperGroup):
    """Typer group that turns errors into one-line messages and exit statuses.

    Messages name parameters as options (``--coarsen 300``, not ``coarsen=300``): the
    commands run under :func:`~devine_onnx.errors.cli_spelling`.
    """

    def get_command(self, ctx, cmd_name):
        command = super().get_command(ctx, cmd_name)
        if command is not None:
            _plain_flags(command, ctx)
        return command

    def format_help(self, ctx, formatter):
        _plain_flags(self, ctx)
        return super().format_help(ctx, formatter)

    def invoke(self, ctx):
        debug = bool(ctx.params.get("debug")) or os.environ.get("DEVINE_ONNX_DEBUG") == "1"
        spelling = {"method": "--devine-method"}  # the devine engine's method option
        with _warnings_to_stderr(debug), _log_to_stderr(debug), cli_spelling(spelling):
            try:
                return super().invoke(ctx)
            except _PASSTHROUGH:
                raise
            except DevineError as exc:
                if debug:
                    raise
                echo_error(f"error: {exc}" if str(exc) else f"error: {type(exc).__name__}")
                raise typer.Exit(1) from None
            except KeyboardInterrupt as exc:
                if debug:
                    raise
                # SIGTERM (Terminated) exits like a shell's kill: 128 + 15.
                term = isinstance(exc, Terminated)
                echo_error("terminated" if term else "interrupted")
                raise typer.Exit(143 if term else 130) from None
            except MemoryError:
                if debug:
                    raise
                echo_error(
                    "error: out of memory; use smaller --chunk-time / tiles, or a machine with "
                    "more memory (rerun with --debug for the traceback)"
                )
                raise typer.Exit(1) from None
            except OSError as exc:
                if debug:
                    raise
                where = f"{exc.filename}: " if getattr(exc, "filename", None) else ""
                echo_error(f"error: {where}{exc.strerror or exc}")
                raise typer.Exit(1) from None
            except Exception as exc:  # noqa: BLE001 - a bug: one line, traceback with --debug
                if debug:
                    raise
                echo_error(
                    f"error: unexpected {type(exc).__name__}: {exc} (rerun with --debug for the "
                    "traceback and report it)"
                )
                raise typer.Exit(1) from None


app = typer.Typer(
    name="devine-onnx",
    cls=CommandGroup,
    add_completion=False,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    rich_markup_mode="rich",
    context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100},
    help=(
        "DEVINE wind downscaling over complex terrain with ONNX Runtime.\n\n"
        "Workflow: [bold]convert[/bold] the official weights once, compute the "
        "[bold]corrections[/bold] table of a DEM once, build the [bold]regrid[/bold] weights "
        "once, then [bold]downscale[/bold] any NWP wind series; [bold]plot[/bold] the results. "
        "[bold]demo[/bold] runs the whole chain with the MicroMet engine on real terrain "
        "(a DEM of Tennessee that matplotlib ships) and a synthetic wind series, in about a "
        "minute."
    ),
    epilog=(
        "Example: devine-onnx demo --out demo/   (then open demo/demo_wind.png)\n\n"
        "Outputs may go into folders that do not exist yet: every command creates them. "
        "Errors print one line and exit 1; add --debug for the traceback."
    ),
)


def _version_callback(value: bool) -> None:
    if value:
        typer.echo(f"devine-onnx {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: Annotated[
        bool,
        typer.Option(
            "--version",
            callback=_version_callback,
            is_eager=True,
            help="Print the version and exit.",
        ),
    ] = False,
    debug: Annotated[
        bool, typer.Option("--debug", help="Show full tracebacks instead of one-line errors.")
    ] = False,
) -> None:
    """DEVINE wind downscaling over complex terrain with ONNX Runtime."""


# ---------------------------------------------------------------------------- entry point
class Terminated(KeyboardInterrupt):
    """Raised in the main thread on SIGTERM: the cleanup of Ctrl-C runs (temporary outputs and
    scratch folders removed, lock released, resumable table partials kept)."""


def _on_sigterm(signum, frame) -> None:
    import signal

    signal.signal(signal.SIGTERM, signal.SIG_IGN)  # a second SIGTERM must not cut the cleanup
    raise Terminated()


@contextmanager
def _sigterm_as_interrupt() -> Iterator[None]:
    """Turn SIGTERM (kill, a batch system's time limit) into :class:`Terminated` meanwhile."""
    import signal
    import threading

    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGTERM, _on_sigterm)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def main(argv: list[str] | None = None) -> None:
    """Entry point of the ``devine-onnx`` console script.

    The process ends right after the command: its objects are left to the interpreter's
    shutdown, which frees them by reference counting, then a last garbage collection would walk
    every object of xarray, pandas, dask and rasterio for cycles (0.15-0.3 s of each command).
    Outputs are complete and closed by then, so :func:`gc.freeze` skips that walk. ``main``
    is therefore meant to end its process (as the console script and ``python -m
    devine_onnx.cli`` do); from a Python session, call the API (:mod:`devine_onnx`) instead.
    """
    try:
        with _sigterm_as_interrupt():
            _main(argv)
    finally:
        import gc

        gc.freeze()


def _main(argv: list[str] | None) -> None:
    args = list(sys.argv[1:] if argv is None else argv)
    # --debug is accepted anywhere before "--" (it is a global option).
    head = args[: args.index("--")] if "--" in args else args
    if "--debug" in head:
        args.remove("--debug")
        args.insert(0, "--debug")
    try:
        app(args=args, prog_name="devine-onnx")
    except KeyboardInterrupt as exc:
        if "--debug" in head:
            raise
        term = isinstance(exc, Terminated)
        echo_error("terminated" if term else "interrupted")
        raise SystemExit(143 if term else 130) from None


def done(quiet: bool, text: str) -> None:
    """Print the one-line summary of a successful command, unless ``--quiet``."""
    if not quiet:
        typer.echo(text)
