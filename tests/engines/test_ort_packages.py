"""Two ONNX Runtime packages installed at once (issue 21 #2).

``onnxruntime`` and ``onnxruntime-gpu`` install the same ``onnxruntime`` folder and overwrite
each other's files. The installed distributions are faked here: real ``*.dist-info`` folders in
a temporary directory, read by :mod:`importlib.metadata` instead of the environment's.
"""

from __future__ import annotations

import warnings
from importlib import metadata

import pytest

from devine_onnx.engines import runtime
from tests.cli.helpers import invoke


def _dist_info(root, name: str, version: str, top_level: str | None = "onnxruntime"):
    folder = root / f"{name.replace('-', '_')}-{version}.dist-info"
    folder.mkdir()
    (folder / "METADATA").write_text(
        f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n", encoding="utf-8"
    )
    if top_level is not None:
        (folder / "top_level.txt").write_text(top_level + "\n", encoding="utf-8")
        (folder / "RECORD").write_text(f"{top_level}/__init__.py,,\n", encoding="utf-8")
        # importlib.metadata lists only the files of RECORD that exist
        (root / top_level).mkdir(exist_ok=True)
        (root / top_level / "__init__.py").touch()


@pytest.fixture
def fake_site(tmp_path, monkeypatch):
    """``installed(*specs)``: the ONNX Runtime packages installed are then these."""

    def installed(*specs):
        for spec in specs:
            _dist_info(tmp_path, *spec)
        real = metadata.distributions  # runtime.metadata is importlib.metadata itself

        def distributions(**kw):
            if kw:
                return real(**kw)
            # the environment as it is (entry points of xarray etc.), its ONNX Runtime
            # packages replaced by the fakes
            kept = [d for d in real() if not d.metadata["Name"].lower().startswith("onnxrun")]
            return iter(kept + list(real(path=[str(tmp_path)])))

        monkeypatch.setattr(runtime.metadata, "distributions", distributions)

    monkeypatch.setattr(runtime, "_CONFLICT_WARNED", False)
    return installed


BOTH = (("onnxruntime", "1.22.0"), ("onnxruntime-gpu", "1.31.1"))


def test_one_package_is_no_conflict(fake_site):
    fake_site(("onnxruntime_gpu", "1.31.1"), ("onnxruntime-extensions", "0.14", "onnxruntime_ext"))
    assert runtime.onnxruntime_distributions() == {"onnxruntime-gpu": "1.31.1"}
    assert runtime.onnxruntime_conflict() is None


def test_both_packages_are_named_with_the_repair(fake_site):
    fake_site(*BOTH)
    assert runtime.onnxruntime_distributions() == {
        "onnxruntime": "1.22.0",
        "onnxruntime-gpu": "1.31.1",
    }
    text = runtime.onnxruntime_conflict()
    assert "onnxruntime 1.22.0 and onnxruntime-gpu 1.31.1" in text
    assert "pip uninstall -y onnxruntime onnxruntime-gpu" in text
    assert "pip install onnxruntime-gpu" in text


def test_package_without_top_level_is_read_from_its_files(tmp_path, fake_site):
    fake_site(*BOTH)
    (tmp_path / "onnxruntime-1.22.0.dist-info" / "top_level.txt").unlink()
    assert len(runtime.onnxruntime_distributions()) == 2


def test_info_says_so(fake_site):
    from devine_onnx.diagnostics import format_info, info

    fake_site(*BOTH)
    data = info()
    assert data["onnxruntime_packages"] == dict(BOTH)
    assert "pip uninstall" in data["onnxruntime_conflict"]
    text = format_info(data)
    assert "onnxruntime + onnxruntime-gpu" in text
    (line,) = [x for x in text.splitlines() if x.startswith("warning:")]
    assert "overwrite each other" in line and "pip uninstall -y" in line


def test_info_command_says_so(fake_site):
    fake_site(*BOTH)
    result = invoke(["info"])
    assert result.exit_code == 0, result.output
    assert "pip uninstall -y onnxruntime onnxruntime-gpu" in result.stdout


def test_info_without_conflict_has_no_warning(fake_site):
    from devine_onnx.diagnostics import format_info, info

    fake_site(("onnxruntime", "1.22.0"))
    data = info()
    assert data["onnxruntime_conflict"] is None
    assert "warning:" not in format_info(data)


def test_first_model_run_warns_once(fake_site, demo_model_file):
    """Opening a session warns before the run (once per process) with the repair."""
    from devine_onnx.engines.devine.model import DevineModel

    fake_site(*BOTH)
    with pytest.warns(runtime.OnnxRuntimeConflictWarning, match="pip uninstall -y"):
        DevineModel(demo_model_file, device="cpu")
    with warnings.catch_warnings():
        warnings.simplefilter("error", runtime.OnnxRuntimeConflictWarning)
        DevineModel(demo_model_file, device="cpu")


def test_first_model_run_on_the_command_line(fake_site, tmp_path, demo_model_file):
    from devine_onnx.sample_data import sample_dem
    from tests.cli.helpers import write_tif

    fake_site(*BOTH)
    dem = write_tif(sample_dem((185, 185)), tmp_path / "dem.tif")
    out = tmp_path / "t.nc"
    args = ["corrections", dem, "-m", demo_model_file, "-o", out, "--angles", "0"]
    result = invoke([*args, "--device", "cpu", "-q"])
    assert result.exit_code == 0, result.output
    warned = [x for x in result.stderr.splitlines() if "overwrite each other" in x]
    assert len(warned) == 1 and warned[0].startswith("warning:"), result.stderr


def test_broken_runtime_error_names_the_repair(fake_site, monkeypatch, tmp_path):
    """A session that fails on a mixed installation blames it, not the model file."""
    import onnxruntime

    def broken(*args, **kwargs):
        raise RuntimeError("undefined symbol: OrtGetApiBase")

    fake_site(*BOTH)
    monkeypatch.setattr(onnxruntime, "InferenceSession", broken)
    model = tmp_path / "m.onnx"
    model.write_bytes(b"\x08\x07")
    with pytest.warns(runtime.OnnxRuntimeConflictWarning):
        with pytest.raises(runtime.DeviceError, match="pip uninstall -y onnxruntime"):
            runtime._session(model, "cpu", None)
