"""Write a DEVINE model folder in the official layout, with synthetic weights.

Builds the *trained* architecture (docs/method.md §1: 79x69 input, its ZeroPadding and Cropping
layers, dropouts, the official layer names) with ``tf_keras`` (Keras 2), sets seeded
synthetic weights and saves it exactly like the official folder: a Keras-2 SavedModel
(``save_format="tf"``), ``weights.h5`` and ``dict_norm.csv``. Used by the tests and to
build the demonstration model; the weights are untrained and carry no physical meaning.
"""

from __future__ import annotations

from pathlib import Path

from .synthetic import OFFICIAL_TRAIN_STD, synthetic_weights


def build_trained_architecture(weights: dict | None = None, input_shape=(79, 69)):
    """The 79x69 Keras-2 model of the official folder, optionally with ``weights`` set.

    ``input_shape`` may be any (H, W) with H ≡ 7 and W ≡ 5 (mod 8): the same pads and crop
    then fit (docs/method.md §1), which lets the trained graph be compared on large inputs.
    """
    from ._tf import import_tensorflow

    import_tensorflow()  # muted start-up logs
    import tf_keras as keras
    from tf_keras import layers as L

    def conv(x, name, filters, kernel=3, activation="relu", padding="same"):
        return L.Conv2D(filters, kernel, activation=activation, padding=padding, name=name)(x)

    h, w = input_shape
    if h % 8 != 7 or w % 8 != 5:
        raise ValueError(f"the trained graph needs H ≡ 7 and W ≡ 5 (mod 8), got {input_shape}")
    inp = keras.Input(shape=(h, w, 1), name="input_1")
    x = L.ZeroPadding2D(((0, 1), (0, 1)), name="zero_padding2d")(inp)
    c1 = conv(conv(x, "conv1_0", 32), "conv1", 32)
    p1 = L.MaxPooling2D(2, name="pool1")(c1)
    c2 = conv(conv(p1, "conv2_0", 64), "conv2", 64)
    p2 = L.MaxPooling2D(2, name="pool2")(c2)
    c3 = conv(conv(p2, "conv3_0", 128), "conv3", 128)
    d3 = L.Dropout(0.25, name="drop3")(c3)
    p3 = L.MaxPooling2D(2, name="pool3")(d3)
    c4 = conv(conv(p3, "conv4_0", 256), "conv4", 256)
    d4 = L.Dropout(0.25, name="drop4")(c4)
    u4 = conv(L.UpSampling2D(2, name="up4_0")(d4), "up4", 128, kernel=2)
    u4 = L.ZeroPadding2D(((0, 0), (0, 1)), name="zero_padding2d_1")(u4)
    x = L.Concatenate(axis=3, name="concat_3")([d3, u4])
    x = conv(conv(x, "conv3_up_0", 128), "conv3_up", 128)
    u3 = conv(L.UpSampling2D(2, name="up3_0")(x), "up3", 64, kernel=2)
    u3 = L.ZeroPadding2D(((0, 0), (0, 1)), name="zero_padding2d_2")(u3)
    x = L.Concatenate(axis=3, name="concat_2")([c2, u3])
    x = conv(conv(x, "conv2_up_0", 64), "conv2_up", 64)
    u2 = conv(L.UpSampling2D(2, name="up2_0")(x), "up2", 32, kernel=2)
    x = L.Concatenate(axis=3, name="concat_1")([c1, u2])
    x = conv(conv(x, "conv1_up_0", 32), "conv1_up", 32)
    x = conv(x, "conv1_1", 3, kernel=1, activation="linear", padding="valid")
    out = L.Cropping2D(((0, 1), (0, 1)), name="cropping2d")(x)
    model = keras.Model(inp, out)
    if weights is not None:
        for name, (kernel, bias) in weights.items():
            model.get_layer(name).set_weights([kernel, bias])
    return model


def write_official_folder(
    folder: str | Path,
    seed: int = 0,
    weights: dict | None = None,
    std: float = OFFICIAL_TRAIN_STD,
    savedmodel: bool = True,
    h5: bool = True,
) -> Path:
    """Write ``folder`` like the official DEVINE model folder, with synthetic weights.

    Returns the folder. ``weights`` defaults to :func:`synthetic_weights` (``seed``).
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    weights = weights if weights is not None else synthetic_weights(seed)
    model = build_trained_architecture(weights)
    # The official model was compiled (RMSprop, mse): its checkpoint carries optimizer slots.
    model.compile(optimizer="rmsprop", loss="mse", metrics=["mae"])
    if savedmodel:
        model.save(str(folder), save_format="tf")
    if h5:
        model.save_weights(str(folder / "weights.h5"))
    (folder / "dict_norm.csv").write_text(f",0\ntrain_mean,1999.4578677579814\ntrain_std,{std!r}\n")
    return folder
