"""The converter: official layouts -> size-agnostic ONNX, checked against independent Keras."""

from __future__ import annotations

import hashlib
import shutil
import subprocess
import sys

import numpy as np
import pytest

from devine_onnx_convert.layers import LAYER_NAMES, LAYERS, n_parameters
from devine_onnx_convert.readers import ConversionError, metadata_conv_names

from .conftest import UPSTREAM

SHAPES = [(80, 72), (136, 200), (248, 104)]

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")


def keras_size_agnostic(weights_of):
    """Independent rebuild of docs/method.md §2 with tf_keras layers (not convert/unet.py)."""
    keras = pytest.importorskip("tf_keras")
    L = keras.layers

    def conv(x, name, filters, k=3, act="relu"):
        layer = L.Conv2D(filters, k, padding="same", activation=act, name=name)
        y = layer(x)
        layer.set_weights(weights_of(name))
        return y

    inp = keras.Input(shape=(None, None, 1))
    c1 = conv(conv(inp, "conv1_0", 32), "conv1", 32)
    c2 = conv(conv(L.MaxPooling2D(2)(c1), "conv2_0", 64), "conv2", 64)
    c3 = conv(conv(L.MaxPooling2D(2)(c2), "conv3_0", 128), "conv3", 128)
    c4 = conv(conv(L.MaxPooling2D(2)(c3), "conv4_0", 256), "conv4", 256)
    u4 = conv(L.UpSampling2D(2)(c4), "up4", 128, k=2)
    x = conv(conv(L.Concatenate()([c3, u4]), "conv3_up_0", 128), "conv3_up", 128)
    u3 = conv(L.UpSampling2D(2)(x), "up3", 64, k=2)
    x = conv(conv(L.Concatenate()([c2, u3]), "conv2_up_0", 64), "conv2_up", 64)
    u2 = conv(L.UpSampling2D(2)(x), "up2", 32, k=2)
    x = conv(conv(L.Concatenate()([c1, u2]), "conv1_up_0", 32), "conv1_up", 32)
    out = conv(x, "conv1_1", 3, k=1, act="linear")
    return keras.Model(inp, out)


@pytest.fixture(scope="module")
def trained_keras(official_folder):
    """The trained-architecture model as saved in the fixture folder, read back by Keras."""
    pytest.importorskip("tf_keras")
    from devine_onnx_convert.fixture import build_trained_architecture

    model = build_trained_architecture()
    model.load_weights(str(official_folder / "weights.h5"))
    return model


@pytest.fixture(scope="module")
def reference(trained_keras):
    return keras_size_agnostic(lambda name: trained_keras.get_layer(name).get_weights())


def ort_run(path, x):
    import onnxruntime as ort

    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return session.run(None, {session.get_inputs()[0].name: x})[0]


def padded_predict(model, x):
    """Run a size-agnostic Keras model with the runtime's zero padding to multiples of 8."""
    _, h, w, _ = x.shape
    xp = np.zeros((1, -(-h // 8) * 8, -(-w // 8) * 8, 1), np.float32)
    xp[:, :h, :w] = x
    return model.predict(xp, verbose=0)[:, :h, :w]


def random_input(shape, seed):
    rng = np.random.default_rng(seed)
    return rng.normal(0, 1.5, (1, *shape, 1)).astype(np.float32)


@pytest.mark.parametrize("source", ["savedmodel", "h5"])
def test_conversion_matches_independent_keras(official_folder, reference, tmp_path, source):
    from devine_onnx_convert import convert_model

    src = official_folder if source == "savedmodel" else official_folder / "weights.h5"
    out = tmp_path / "devine.onnx"
    report = convert_model(src, out)
    assert out.is_file() and report.max_difference <= 1e-4
    for i, shape in enumerate(SHAPES):
        x = random_input(shape, i)
        got = ort_run(out, x)
        want = reference.predict(x, verbose=0)
        assert got.shape == (1, *shape, 3)
        np.testing.assert_allclose(got, want, atol=1e-4, rtol=0)
        assert np.abs(want).max() > 0.1  # the comparison is not between two zero fields


def test_metadata_and_dynamic_signature(official_folder, tmp_path):
    import onnx

    from devine_onnx_convert import convert_model

    out = tmp_path / "m.onnx"
    convert_model(official_folder / "weights.h5", out)
    model = onnx.load(str(out))
    meta = {p.key: p.value for p in model.metadata_props}
    assert float(meta["devine.sigma"]) == pytest.approx(141.1161085195641, abs=0)
    assert meta["devine.multiple"] == "8"
    assert meta["devine.channels"] == "u,v,w"
    expected_sha = hashlib.sha256((official_folder / "weights.h5").read_bytes()).hexdigest()
    assert meta["devine.source_sha256"] == expected_sha
    assert meta["devine.converter_version"]
    (inp,), (outp,) = model.graph.input, model.graph.output
    dims = [d for d in inp.type.tensor_type.shape.dim]
    assert len(dims) == 4 and dims[3].dim_value == 1
    assert all(not d.HasField("dim_value") for d in dims[:3])  # N, H, W dynamic
    assert outp.type.tensor_type.shape.dim[3].dim_value == 3
    n_weights = sum(int(np.prod(t.dims)) for t in model.graph.initializer if len(t.dims) >= 1)
    assert n_weights >= n_parameters()


def test_std_option_overrides_dict_norm(official_folder, tmp_path):
    import onnx

    from devine_onnx_convert import convert_model

    out = tmp_path / "m.onnx"
    convert_model(official_folder / "weights.h5", out, std=100.5, check=False)
    meta = {p.key: p.value for p in onnx.load(str(out)).metadata_props}
    assert float(meta["devine.sigma"]) == 100.5


def test_full_model_h5_layout(trained_keras, official_folder, tmp_path):
    from devine_onnx_convert import convert_model

    full = tmp_path / "full.h5"
    trained_keras.save(str(full), save_format="h5")
    shutil.copy(official_folder / "dict_norm.csv", tmp_path / "dict_norm.csv")
    out = tmp_path / "full.onnx"
    convert_model(full, out, check=False)
    x = random_input(SHAPES[0], 3)
    other = tmp_path / "w.onnx"
    convert_model(official_folder / "weights.h5", other, check=False)
    np.testing.assert_array_equal(ort_run(out, x), ort_run(other, x))


def test_fp16_variant(official_folder, tmp_path):
    from devine_onnx_convert import convert_model

    out = tmp_path / "devine.onnx"
    report = convert_model(official_folder / "weights.h5", out, fp16=True)
    assert report.fp16_output == tmp_path / "devine.fp16.onnx"
    x = random_input(SHAPES[1], 5)
    full, half = ort_run(out, x), ort_run(report.fp16_output, x)
    assert half.dtype == np.float32  # float32 interface
    err = np.abs(full - half).max()
    assert 0 < err < 2e-2  # really half precision, and close


def test_layer_mapping_matches_real_checkpoint():
    """Our layer order and shapes against the real official checkpoint index and metadata."""
    tf = pytest.importorskip("tensorflow")
    index = UPSTREAM / "variables" / "variables.index"
    if not index.is_file():
        pytest.skip("../shared/upstream_model is absent")
    shapes = dict(tf.train.list_variables(str(UPSTREAM / "variables" / "variables")))
    for n, layer in enumerate(LAYERS):
        prefix = f"layer_with_weights-{n}"
        assert tuple(shapes[f"{prefix}/kernel/.ATTRIBUTES/VARIABLE_VALUE"]) == layer.kernel
        assert tuple(shapes[f"{prefix}/bias/.ATTRIBUTES/VARIABLE_VALUE"]) == layer.bias
    assert f"layer_with_weights-{len(LAYERS)}/kernel/.ATTRIBUTES/VARIABLE_VALUE" not in shapes
    assert metadata_conv_names(UPSTREAM / "keras_metadata.pb") == list(LAYER_NAMES)
    assert n_parameters() == 1_925_091


def test_fixture_checkpoint_has_official_keys(official_folder):
    tf = pytest.importorskip("tensorflow")
    mine = dict(tf.train.list_variables(str(official_folder / "variables" / "variables")))
    if not (UPSTREAM / "variables" / "variables.index").is_file():
        pytest.skip("../shared/upstream_model is absent")
    real = dict(tf.train.list_variables(str(UPSTREAM / "variables" / "variables")))
    # Weights only: the real checkpoint also holds RMSprop slots of a trained optimizer.
    layer_keys = {
        k for k in real if k.startswith("layer_with_weights-") and ".OPTIMIZER_SLOT" not in k
    }
    assert len(layer_keys) == 36
    assert layer_keys <= set(mine)
    assert all(tuple(mine[k]) == tuple(real[k]) for k in layer_keys)


# --- bad inputs -------------------------------------------------------------------------


def _h5_copy(official_folder, tmp_path, edit):
    h5py = pytest.importorskip("h5py")
    path = tmp_path / "weights.h5"
    shutil.copy(official_folder / "weights.h5", path)
    shutil.copy(official_folder / "dict_norm.csv", tmp_path / "dict_norm.csv")
    with h5py.File(path, "r+") as f:
        edit(f)
    return path


def test_empty_folder_refused(tmp_path):
    from devine_onnx_convert import convert_model

    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(ConversionError, match="variables.index"):
        convert_model(empty, tmp_path / "out.onnx")
    assert not list(tmp_path.glob("out.onnx*"))


def test_h5_missing_layer_refused(official_folder, tmp_path):
    from devine_onnx_convert import convert_model

    def drop(f):
        del f["conv3_up"]

    path = _h5_copy(official_folder, tmp_path, drop)
    with pytest.raises(ConversionError, match="conv3_up is missing"):
        convert_model(path, tmp_path / "out.onnx")
    assert not list(tmp_path.glob("out.onnx*"))


def test_h5_wrong_kernel_shape_refused(official_folder, tmp_path):
    from devine_onnx_convert import convert_model

    def reshape(f):
        group = f["conv2"]["conv2"]
        del group["kernel:0"]
        group.create_dataset("kernel:0", data=np.zeros((3, 3, 64, 32), np.float32))

    path = _h5_copy(official_folder, tmp_path, reshape)
    with pytest.raises(ConversionError) as err:
        convert_model(path, tmp_path / "out.onnx")
    msg = str(err.value)
    assert "conv2 kernel" in msg and "(3, 3, 64, 64)" in msg and "(3, 3, 64, 32)" in msg
    assert "\n" not in msg
    assert not list(tmp_path.glob("out.onnx*"))


def test_missing_dict_norm_refused(official_folder, tmp_path):
    from devine_onnx_convert import convert_model

    shutil.copy(official_folder / "weights.h5", tmp_path / "weights.h5")
    with pytest.raises(ConversionError, match="dict_norm.csv not found.*--std"):
        convert_model(tmp_path / "weights.h5", tmp_path / "out.onnx")
    assert not list(tmp_path.glob("out.onnx*"))


def test_cli_bad_input_one_line_no_traceback(tmp_path):
    pytest.importorskip("tensorflow")
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "devine_onnx_convert",
            str(tmp_path / "nope"),
            "-o",
            str(tmp_path / "o.onnx"),
        ],
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 1
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error:") and "nope" in lines[0]
    assert "Traceback" not in proc.stderr
    assert not (tmp_path / "o.onnx").exists()


def test_cli_converts(official_folder, tmp_path):
    pytest.importorskip("tensorflow")
    out = tmp_path / "cli.onnx"
    proc = subprocess.run(
        [sys.executable, "-m", "devine_onnx_convert", str(official_folder), "-o", str(out)],
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 0, proc.stderr
    assert out.is_file() and "parity check passed" in proc.stdout


# --- size-agnostic vs trained graph (documented in docs/model.md) ------------------------


def test_size_agnostic_equals_trained_graph_away_from_bottom_right(trained_keras, tmp_path):
    """On a large input with the trained pads, the models agree except near the right/bottom."""
    from devine_onnx_convert.fixture import build_trained_architecture

    weights = {n: trained_keras.get_layer(n).get_weights() for n in LAYER_NAMES}
    big = build_trained_architecture({n: tuple(w) for n, w in weights.items()}, (151, 141))
    agnostic = keras_size_agnostic(lambda name: weights[name])
    x = random_input((151, 141), 11)
    a = big.predict(x, verbose=0)[0]
    b = padded_predict(agnostic, x)[0]
    diff = np.abs(a - b).max(axis=-1)
    # H ≡ 7 (mod 8): both pad one row, so rows never differ; W ≡ 5: the trained graph pads
    # one column (then re-pads inside), the runtime three, so only the right edge differs.
    assert diff[:, : 141 - 64].max() <= 1e-5
    assert diff.max() > 1e-3  # they do differ near the edges (the trained pads)
