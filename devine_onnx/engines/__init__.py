"""Table engines: the ways of computing a correction table (interface in :mod:`.base`).

============  ===========================================================  ============
name          method                                                       needs
============  ===========================================================  ============
``devine``    the DEVINE UNet on the DEM rotated to every direction         ONNX model
``micromet``  MicroMet terrain parameterisation (Liston & Elder 2006)       nothing
``features``  devine-torch networks on direction-dependent terrain features  ONNX model
``helbig``    Helbig et al. (2017) speed factor (same for every direction)  nothing
============  ===========================================================  ============

:func:`get_engine` opens one by name; :func:`engine_for_model` picks ``devine`` or
``features`` from a converted model's metadata.
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING

from devine_onnx.errors import OptionError, option

if TYPE_CHECKING:
    from devine_onnx.engines.base import TableEngine, TableWindow

__all__ = [
    "ENGINES",
    "TableEngine",
    "TableWindow",
    "engine_class",
    "engine_for_model",
    "get_engine",
]

#: Engine name -> (module, class, needs a model file).
ENGINES = {
    "devine": ("devine_onnx.engines.devine.engine", "DevineEngine", True),
    "micromet": ("devine_onnx.engines.micromet", "MicroMetEngine", False),
    "features": ("devine_onnx.engines.features", "FeatureNetworkEngine", True),
    "helbig": ("devine_onnx.engines.helbig", "HelbigEngine", False),
}


def __getattr__(name: str):
    # TableEngine / TableWindow import xarray: loaded on first use, so that light modules
    # (runtime.MODEL_ENV for the command line) do not pay for it.
    if name in ("TableEngine", "TableWindow"):
        from devine_onnx.engines import base

        return getattr(base, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def engine_class(name: str) -> type[TableEngine]:
    """The engine class registered as ``name`` (:class:`OptionError` for unknown names)."""
    if name not in ENGINES:
        raise OptionError(
            f"{option('engine', name)}: unknown engine; choose one of {', '.join(ENGINES)} "
            "('devine-onnx info' describes them)"
        )
    module, cls, _ = ENGINES[name]
    return getattr(import_module(module), cls)


def engine_for_model(model, device: str = "auto", **options) -> TableEngine:
    """The engine a converted model needs: ``features`` or ``devine``, from its metadata."""
    from devine_onnx.engines.base import TableEngine
    from devine_onnx.engines.devine.model import DevineModel
    from devine_onnx.engines.runtime import demo_model_path, model_kind, open_model_session

    if isinstance(model, DevineModel) or hasattr(model, "predict"):
        return engine_class("devine")(model, device=device, **options)
    if isinstance(model, str) and model == "demo":
        model = demo_model_path()
    if isinstance(model, TableEngine):
        return model
    from devine_onnx.engines.features import FeatureNetwork, network_threads
    from devine_onnx.engines.runtime import cuda_usable

    if isinstance(model, FeatureNetwork):
        return engine_class("features")(model, device=device, **options)
    # Opened once: on the CPU as a feature network would be, the session is reused by it.
    on_cpu = device == "cpu" or (device == "auto" and not cuda_usable())
    threads = network_threads(options.get("threads"))
    opened = open_model_session(
        model, device if on_cpu else "cpu", threads, config=FeatureNetwork.SESSION_CONFIG
    )
    path, _, meta = opened
    if model_kind(meta) == "features":
        network = FeatureNetwork(path, device, threads, opened=opened if on_cpu else None)
        return engine_class("features")(network, device=device, **options)
    return engine_class("devine")(path, device=device, **options)


def get_engine(engine=None, model=None, *, device: str = "auto", options=None) -> TableEngine:
    """Open the engine that builds a table.

    Parameters
    ----------
    engine : str or TableEngine, optional
        ``"devine"``, ``"micromet"``, ``"features"``, ``"helbig"``, or an engine instance.
        None: the engine the model's metadata names (a model is then required).
    model
        Converted ONNX model (path, ``"demo"``, or an open model) for ``devine``/``features``.
        None with ``engine="devine"``: ``$DEVINE_ONNX_MODEL``.
    device : str
        ``"auto"``, ``"cpu"`` or ``"cuda"`` for model engines.
    options : dict, optional
        Engine parameters (e.g. ``{"length_scale": 300}`` for ``micromet``).

    Raises
    ------
    OptionError
        Unknown engine, a model given to ``micromet``, no model and no engine, a model of the
        other family than ``engine``, or an option the engine does not take.
    """
    import os

    from devine_onnx.engines.base import TableEngine
    from devine_onnx.engines.runtime import MODEL_ENV

    options = dict(options or {})
    if isinstance(engine, TableEngine):
        if model is not None:
            raise OptionError("model: give either an engine instance or a model, not both")
        return engine
    if engine is None and model is None and not os.environ.get(MODEL_ENV):
        raise OptionError(
            f"no model and no {option('engine')}: use the built-in physical default with "
            f"{option('engine', 'micromet')}, or convert the official DEVINE weights "
            f"(devine-onnx convert FOLDER -o devine.onnx) and pass "
            f"{option('model', 'devine.onnx')} ({option('model', 'demo')} runs the shipped "
            "demonstration model with synthetic weights)"
        )
    if engine is not None:
        cls = engine_class(engine)
        needs_model = ENGINES[engine][2]
        if not needs_model and model is not None:
            raise OptionError(
                f"{option('model', model)}: the {engine} engine needs no model; drop "
                f"{option('model')}, or choose another engine"
            )
    if engine is None or ENGINES[engine][2]:
        opened = engine_for_model(model, device=device, **_accepted(engine, model, options))
        if engine is not None and opened.name != engine:
            raise OptionError(
                f"{option('model', model)}: a {opened.name} model, but "
                f"{option('engine', engine)} was asked for; use "
                f"{option('engine', opened.name)} or a {engine} model"
            )
        return opened
    return cls(**_accepted(engine, model, options))


def _accepted(engine, model, options: dict) -> dict:
    """``options``, refused with one line when the engine does not take one of them."""
    import inspect

    if not options:
        return options
    name = engine
    if name is None:
        from devine_onnx.engines.runtime import model_kind, open_model_session

        if hasattr(model, "predict"):
            name = "devine"
        else:
            try:
                _, _, meta = open_model_session(model, device="cpu")
            except Exception:  # noqa: BLE001 - the model's own error comes later, once
                return options
            name = "features" if model_kind(meta) == "features" else "devine"
    params = inspect.signature(engine_class(name).__init__).parameters
    for key in options:
        if key not in params or key in ("self", "model", "device"):
            raise OptionError(
                f"{option(key, options[key])}: the {name} engine has no such option; see "
                "'devine-onnx corrections --help'"
            )
    return options
