"""Seeded synthetic weights with DEVINE's architecture (for tests and the demo model).

These weights are NOT trained: a model built from them runs the whole pipeline but its
outputs have no physical meaning. No TensorFlow import here (pure numpy).
"""

from __future__ import annotations

import numpy as np

from .layers import LAYERS

#: Normalisation σ of the official model (``dict_norm.csv``, row ``train_std``).
OFFICIAL_TRAIN_STD = 141.1161085195641


def synthetic_weights(seed: int = 0, inflow: float = 3.0, gain: float = 0.3) -> dict:
    """Return ``{layer name: (kernel HWIO float32, bias float32)}`` for all 18 layers.

    He-normal kernels and small random biases for the hidden layers. The last (linear) layer
    gets its kernel scaled by ``gain`` and a bias of ``(inflow, 0, 0)``, so that the output u
    stays near the ARPS inflow speed (3 m/s) with a terrain-dependent perturbation: tables made
    from these weights look plausible (acceleration near 1, small deflections) without any
    physical meaning.
    """
    rng = np.random.default_rng(seed)
    weights = {}
    for layer in LAYERS:
        kh, kw, cin, cout = layer.kernel
        std = np.sqrt(2.0 / (kh * kw * cin))
        kernel = rng.normal(0.0, std, size=layer.kernel).astype(np.float32)
        bias = rng.normal(0.0, 0.05, size=(cout,)).astype(np.float32)
        if layer.activation == "linear":
            kernel *= np.float32(gain)
            bias = np.array([inflow, 0.0, 0.0], dtype=np.float32)
        weights[layer.name] = (kernel, bias)
    return weights
