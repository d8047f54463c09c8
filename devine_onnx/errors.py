"""Exception hierarchy of devine-onnx.

Every error a user can trigger with bad input derives from :class:`DevineError`. Its message is
one line that names the file or option, says what was expected and what to do. The CLI prints
that line (no traceback unless ``--debug``) and exits with status 1.

Messages name a parameter with :func:`option`: ``coarsen=300`` when called from Python,
``--coarsen 300`` when called from the command line (which wraps each command in
:func:`cli_spelling`). Warnings about the data derive from :class:`DevineWarning`.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from contextvars import ContextVar


class DevineError(Exception):
    """Base class of all devine-onnx errors caused by input, configuration or environment."""


class InputFileError(DevineError):
    """A file is missing, unreadable or not of the expected format."""


class DEMError(InputFileError):
    """The DEM cannot be used: geographic CRS, holes, too small, non-square pixels..."""


class ModelError(InputFileError):
    """The ONNX file is not a (valid) DEVINE model."""


class NWPError(InputFileError):
    """The NWP file lacks wind variables, coordinates, or does not cover the table."""


class WeightsMismatchError(DevineError):
    """Saved regridding weights do not match the source or target grid."""


class TableError(InputFileError):
    """A correction table file is malformed or does not match what is asked of it."""


class DeviceError(DevineError):
    """The requested execution device (e.g. CUDA) is not available."""


class OutputError(DevineError):
    """The output cannot be written (folder missing or not writable, bad suffix...)."""


class OptionError(DevineError):
    """A command-line or API option has an invalid value."""


class DevineWarning(UserWarning):
    """Base class of the warnings devine-onnx emits about the data (filter them by this class)."""


# ---------------------------------------------------------------------------- option spelling
#: ``None`` from Python; from the command line, overrides of the option spelling of parameters.
_CLI_OPTIONS: ContextVar[Mapping[str, str] | None] = ContextVar("devine_onnx_cli", default=None)
_NO_VALUE = object()


def option(name: str, value=_NO_VALUE) -> str:
    """A parameter as the user spelled it, for error and warning messages.

    From Python: ``name`` or ``name=value`` (``repr`` of the value), e.g. ``coarsen=300``. Under
    :func:`cli_spelling` (the command line): the option, ``--coarsen`` or ``--coarsen 300``
    (``--`` + the name with dashes, unless the CLI maps it to another option).
    """
    cli = _CLI_OPTIONS.get()
    if cli is None:
        return name if value is _NO_VALUE else f"{name}={value!r}"
    flag = cli.get(name) or "--" + name.replace("_", "-")
    return flag if value is _NO_VALUE else f"{flag} {value}"


@contextmanager
def cli_spelling(options: Mapping[str, str] | None = None) -> Iterator[None]:
    """Within this context, :func:`option` spells parameters as command-line options."""
    token = _CLI_OPTIONS.set(dict(options or {}))
    try:
        yield
    finally:
        _CLI_OPTIONS.reset(token)


def number_option(
    name: str,
    value,
    expected: str,
    *,
    minimum: float = 0.0,
    inclusive: bool = False,
    finite: bool = True,
    error: type[Exception] = OptionError,
    label=_NO_VALUE,
) -> float:
    """``float(value)`` of a numeric option, or one-line ``error``: ``"{option}: {expected}"``.

    Refused: what is not a number, NaN, infinity unless ``finite`` is False, and values not above ``minimum`` (not at least ``minimum`` with ``inclusive``).
    ``label`` replaces the value shown in the message (default: ``value`` as given).
    """
    try:
        number = float(value)
    except (TypeError, ValueError):
        number = float("nan")
    low_ok = number >= minimum if inclusive else number > minimum
    if not low_ok or (finite and not math.isfinite(number)):
        raise error(f"{option(name, value if label is _NO_VALUE else label)}: {expected}")
    return number


def first_line(exc: BaseException, limit: int = 160) -> str:
    """First line of an exception's message (its type name when empty), cut to ``limit``.

    Backends (netCDF-C, GDAL, ONNX Runtime...) raise multi-line messages; a one-line error of
    ours quotes only this.
    """
    text = str(exc).strip()
    return (text.splitlines()[0][:limit] if text else "") or type(exc).__name__


class MissingDependencyError(DevineError):
    """An optional dependency is missing; the message says which extra to install."""


class ObservationError(InputFileError):
    """A station observation or station list file is malformed (columns, values, times)."""
