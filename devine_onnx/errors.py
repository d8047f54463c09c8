"""Exception hierarchy of devine-onnx.

Every error a user can trigger with bad input derives from :class:`DevineError`. Its message is
one line that names the file or option, says what was expected and what to do. The CLI prints
that line (no traceback unless ``--debug``) and exits with status 1.
"""

from __future__ import annotations


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


class MissingDependencyError(DevineError):
    """An optional dependency is missing; the message says which extra to install."""
