"""Synthetic (untrained) model weights: one wording, warned before the work starts.

The shipped demonstration model (``-m demo``), models converted with ``--synthetic`` and the
folders of ``devine-onnx convert --example`` have weights that were never trained: everything
computed with them shows the pipeline working but is NOT physical. Such a model carries
``devine.synthetic_weights = "true"`` in its ONNX metadata; a table computed with it says so
in its attributes (``synthetic_weights``, ``comment``), and so does a wind file downscaled
with that table.

Every command that uses such a model, table or wind file warns with
:class:`SyntheticWeightsWarning` (printed as one ``warning:`` line by the command line, even
with ``-q``) before it starts working: ``corrections``, ``downscale`` (table and per-step
modes), ``plot``, ``export`` and ``evaluate``. This module sits at the bottom of the layers
(it imports only :mod:`devine_onnx.errors`) so that every layer words it the same way.
"""

from __future__ import annotations

import os
import warnings

from devine_onnx.errors import DevineWarning

__all__ = ["SyntheticWeightsWarning", "synthetic_message", "warn_synthetic"]

#: What to do instead, for the DEVINE UNet (engine ``devine``).
DEVINE_REMEDY = (
    "for real winds convert the official DEVINE weights with 'devine-onnx convert' "
    "(see models/README.md)"
)
#: What to do instead, for a devine-torch feature network (engine ``features``).
TORCH_REMEDY = (
    "for real winds convert a trained devine-torch model folder with 'devine-onnx convert "
    "FOLDER -o MODEL.onnx' (see docs/devine_torch.md)"
)


class SyntheticWeightsWarning(DevineWarning):
    """A model, table or wind file made with synthetic (untrained) weights is used."""


def synthetic_message(
    name: str | os.PathLike, *, made: str, engine: str | None = None, model: bool = False
) -> str:
    """The one-line warning about synthetic weights.

    Parameters
    ----------
    name
        The model, table or wind file as the user named it.
    made
        What the command makes from it, e.g. ``"this table"``, ``"the downscaled wind"``.
    engine
        ``"features"`` for a devine-torch feature network (its converter is named), anything
        else for the DEVINE UNet.
    model
        ``name`` is the model itself (True) or something computed with one (False).

    Returns
    -------
    str
        ``"NAME has synthetic (untrained) weights: MADE will be a demonstration only, NOT
        physical; for real winds convert ..."``.
    """
    what = (
        "has synthetic (untrained) weights"
        if model
        else "was computed with synthetic (untrained) model weights"
    )
    remedy = TORCH_REMEDY if engine == "features" else DEVINE_REMEDY
    return f"{name} {what}: {made} will be a demonstration only, NOT physical; {remedy}"


def warn_synthetic(
    name: str | os.PathLike,
    *,
    made: str,
    engine: str | None = None,
    model: bool = False,
    stacklevel: int = 2,
) -> None:
    """Warn (:class:`SyntheticWeightsWarning`) with :func:`synthetic_message`.

    Call it before the work starts, not after: a long run must not end with the news that
    its result is not physical.
    """
    warnings.warn(
        synthetic_message(name, made=made, engine=engine, model=model),
        SyntheticWeightsWarning,
        stacklevel=stacklevel + 1,
    )
