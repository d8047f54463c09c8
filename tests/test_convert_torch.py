"""The devine-torch converter: model folders -> dynamic-size ONNX, checked against PyTorch.

Folders are synthetic (seeded weights with devine-torch's exact key names and layout). PyTorch
is reached only through ``pytest.importorskip("torch")``.
"""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys

import numpy as np
import pytest
from typer.testing import CliRunner

from devine_onnx.cli import app
from devine_onnx.errors import ModelError
from devine_onnx_convert.readers import ConversionError
from devine_onnx_convert.torch_layout import KEYS, TENSORS, n_parameters

from .feature_models import convert_folder, torch_module, torch_net, torch_run

runner = CliRunner()
SIZES = [(64, 96), (97, 131), (50, 77)]  # two are not multiples of 8


def invoke(args):
    return runner.invoke(app, [str(a) for a in args])


def assert_one_line_error(result, *needles):
    detail = f"exit {result.exit_code}\n{result.output}\n{result.exception!r}"
    assert result.exit_code == 1, detail
    assert "Traceback" not in result.output, detail
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, detail
    for needle in needles:
        assert needle in errors[0], detail


@pytest.fixture(scope="module")
def converted(tmp_path_factory):
    return convert_folder(tmp_path_factory.mktemp("torch"), seed=11)


def ort_run(path, x):
    import onnxruntime as ort

    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return session.run(None, {session.get_inputs()[0].name: x})[0]


# --------------------------------------------------------------------------- layout
def test_layout_is_devine_torch():
    assert len(TENSORS) == 36
    assert n_parameters() == 1_925_667
    assert KEYS[0] == "conv1.double_conv.0.weight"
    assert "stack_conv3.double_conv.double_conv.2.bias" in KEYS
    assert "up4.conv_up.1.weight" in KEYS and KEYS[-1] == "out_layer.output_conv.0.bias"


def test_module_matches_layout():
    torch_module()
    from devine_onnx_convert.torch_model import WindUNet

    state = WindUNet().state_dict()
    assert [(k, tuple(v.shape)) for k, v in state.items()] == [(t.key, t.shape) for t in TENSORS]


# --------------------------------------------------------------------------- parity
@pytest.mark.parametrize("shape", SIZES)
def test_onnx_matches_pytorch(converted, shape):
    folder, onnx_path = converted
    rng = np.random.default_rng(shape[0])
    x = rng.normal(0, 1, (2, 3, *shape)).astype(np.float32)
    ref = torch_run(torch_net(folder), x)
    got = ort_run(onnx_path, x)
    assert got.shape == (2, 3, *shape)
    assert np.max(np.abs(got - ref)) <= 1e-4
    assert np.std(ref) > 0.05  # a non-trivial output


def test_metadata(converted):
    import onnx

    folder, onnx_path = converted
    meta = {p.key: p.value for p in onnx.load(str(onnx_path)).metadata_props}
    assert meta["devine.kind"] == "features"
    assert meta["devine.channels"] == "deflLis,reldem,ydsc"
    assert meta["devine.input_layout"] == "NCHW"
    norm = json.loads((folder / "norm.json").read_text())
    assert json.loads(meta["devine.norm_mean"]) == norm["mean"]
    assert json.loads(meta["devine.norm_std"]) == norm["std"]
    assert meta["devine.activation"] == "ReLU"
    digest = hashlib.sha256((folder / "model.pt").read_bytes()).hexdigest()
    assert meta["devine.source_sha256"] == digest
    assert meta["devine.model_id"] == folder.name
    assert "untrained" in meta["devine.model_description"]
    assert meta["devine.synthetic_weights"] == "true"
    from devine_onnx._version import __version__

    assert meta["devine.converter_version"] == __version__
    import onnxruntime as ort

    inp = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"]).get_inputs()
    assert inp[0].shape == ["n", 3, "h", "w"]


def test_lightning_checkpoint_with_prefix(tmp_path, converted):
    _, plain = converted
    _, wrapped = convert_folder(tmp_path, seed=11, lightning=True, prefix="model.")
    x = np.random.default_rng(0).normal(size=(1, 3, 40, 56)).astype(np.float32)
    np.testing.assert_array_equal(ort_run(wrapped, x), ort_run(plain, x))


def test_conversion_needs_no_cuda(tmp_path):
    """The converter runs on the CPU only (works with PyTorch's CPU-only build): converting a
    folder, parity check included, never initialises CUDA, even where a GPU is visible."""
    torch_module()
    code = (
        "import sys, torch\n"
        "from devine_onnx_convert.torch_fixture import write_torch_folder\n"
        "from devine_onnx_convert.torch_export import convert_torch_model\n"
        f"folder = write_torch_folder({str(tmp_path / 'cpu-model')!r}, seed=4)\n"
        f"convert_torch_model(folder, {str(tmp_path / 'cpu.onnx')!r})\n"
        "assert not torch.cuda.is_initialized(), 'CUDA was initialised'\n"
        "print('ok')\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert proc.returncode == 0 and "ok" in proc.stdout, proc.stderr[-2000:]
    assert (tmp_path / "cpu.onnx").is_file()


def test_cli_convert_and_python_m(tmp_path):
    torch_module()
    from devine_onnx_convert.torch_fixture import write_torch_folder

    folder = write_torch_folder(tmp_path / "cli-model", seed=2)
    out = tmp_path / "cli.onnx"
    result = invoke(["convert", folder, "-o", out])
    assert result.exit_code == 0, result.output
    assert "feature network" in result.output and "parity check passed" in result.output
    assert out.is_file()
    out2 = tmp_path / "cli2.onnx"
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "devine_onnx_convert",
            str(folder),
            "-o",
            str(out2),
            "-q",
            "--no-check",
        ],  # parity is checked above and in test_onnx_matches_pytorch
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 0, proc.stderr
    assert out2.is_file()


# --------------------------------------------------------------------------- refusals
def _folder(tmp_path, **kwargs):
    torch_module()
    from devine_onnx_convert.torch_fixture import synthetic_state_dict, write_torch_folder

    state = kwargs.pop("state_fn", lambda s: s)(synthetic_state_dict(0))
    return write_torch_folder(tmp_path / "bad-model", state=state, **kwargs)


def _renamed(state):
    state["conv1.conv.0.weight"] = state.pop("conv1.double_conv.0.weight")
    return state


def _four_channels(state):
    state["conv1.double_conv.0.weight"] = np.zeros((32, 4, 3, 3), np.float32)
    return state


def _missing(state):
    del state["up3.conv_up.1.bias"]
    return state


@pytest.mark.parametrize(
    ("kwargs", "needles"),
    [
        ({"norm": False}, ["norm.json", "not found"]),
        ({"info": False}, ["info.yaml", "not found"]),
        ({"state_fn": _renamed}, ["conv1.conv.0.weight", "unexpected"]),
        ({"state_fn": _four_channels}, ["conv1.double_conv.0.weight", "4 input channels"]),
        ({"state_fn": _missing}, ["up3.conv_up.1.bias", "missing"]),
        ({"mean": (0.0, 1.0)}, ["norm.json", "'mean' must be a list of 3"]),
        ({"std": (1.0, 0.0, 1.0)}, ["norm.json", "'std'"]),
        ({"info_extra": {"channels": 4}}, ["info.yaml", "channels"]),
        ({"activation": "Softplus"}, ["info.yaml", "Softplus"]),
    ],
    ids=[
        "no-norm",
        "no-info",
        "key-name",
        "channels",
        "missing-key",
        "mean",
        "std",
        "info-ch",
        "act",
    ],
)
def test_bad_folders_are_refused(tmp_path, kwargs, needles):
    # info_extra appends a second "channels:" line, which overrides the first in YAML.
    folder = _folder(tmp_path, **kwargs)
    out = tmp_path / "bad.onnx"
    result = invoke(["convert", folder, "-o", out, "--no-check"])
    assert_one_line_error(result, *needles)
    assert not out.exists()


def test_not_a_state_dict(tmp_path):
    torch = torch_module()
    from devine_onnx_convert.torch_fixture import write_torch_folder

    folder = write_torch_folder(tmp_path / "m", seed=0)
    torch.save([1, 2, 3], folder / "model.pt")
    with pytest.raises(ConversionError, match="not a state dict"):
        from devine_onnx_convert.torch_export import convert_torch_model

        convert_torch_model(folder, tmp_path / "x.onnx")


def test_std_option_refused_for_torch_folder(tmp_path):
    folder = _folder(tmp_path)
    assert_one_line_error(
        invoke(["convert", folder, "-o", tmp_path / "x.onnx", "--std", "3"]), "--std"
    )


def test_feature_model_refused_where_rotation_model_needed(converted):
    from devine_onnx.engines.devine.model import DevineModel

    _, onnx_path = converted
    with pytest.raises(ModelError, match="feature network") as info:
        DevineModel(onnx_path, device="cpu")
    assert "\n" not in str(info.value)


# --------------------------------------------------------------------------- issue 20 #9
@pytest.mark.parametrize("how", ["dotdot", "absolute", "symlink"])
@pytest.mark.parametrize("key", ["checkpoint", "normalisation"])
def test_info_paths_stay_inside_the_model_folder(tmp_path, key, how):
    """info.yaml may not send the converter to a file outside the model folder (a planted
    checkpoint would be unpickled with --trusted-checkpoint, a norm.json read from anywhere)."""
    folder = _folder(tmp_path)
    name = "model.pt" if key == "checkpoint" else "norm.json"
    outside = tmp_path / f"elsewhere-{name}"
    outside.write_bytes((folder / name).read_bytes())
    if how == "dotdot":
        value = f"../{outside.name}"
    elif how == "absolute":
        value = str(outside)
    else:
        (folder / f"link-{name}").symlink_to(outside)
        value = f"link-{name}"
    info = folder / "info.yaml"
    info.write_text(info.read_text().replace(f"{key}: {name}", f"{key}: {value}"))
    assert f"{key}: {value}" in info.read_text()
    out = tmp_path / "planted.onnx"
    result = invoke(["convert", folder, "-o", out, "--no-check"])
    assert_one_line_error(result, "info.yaml", key, "outside the model folder")
    assert not out.exists()


def test_info_paths_inside_the_folder_still_work(tmp_path):
    folder = _folder(tmp_path)
    (folder / "weights").mkdir()
    (folder / "model.pt").rename(folder / "weights" / "m.pt")
    info = folder / "info.yaml"
    info.write_text(info.read_text().replace("checkpoint: model.pt", "checkpoint: weights/m.pt"))
    from devine_onnx_convert.torch_folder import read_torch_folder

    assert read_torch_folder(folder).checkpoint == folder / "weights" / "m.pt"
