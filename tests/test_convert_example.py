"""``devine-onnx convert --example FOLDER``: a devine-torch folder to try the workflow (issue 21 #8).

Before, such a folder could only be written with a private converter helper named in the docs'
Tests section. The folder has devine-torch's layout and says it is synthetic; converting it
gives a model marked synthetic, which every command then warns about.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

import pytest

from tests.cli.helpers import assert_refused, invoke

pytest.importorskip("torch")
pytest.importorskip("onnx")

ROOT = Path(__file__).resolve().parents[1]


def test_example_folder_has_devine_torch_layout(tmp_path):
    from devine_onnx_convert.torch_folder import is_torch_folder, read_torch_folder

    folder = tmp_path / "try" / "example-torch"  # missing parents are created
    result = invoke(["convert", "--example", folder])
    assert result.exit_code == 0, result.output
    assert sorted(p.name for p in folder.iterdir()) == ["info.yaml", "model.pt", "norm.json"]
    assert is_torch_folder(folder)
    info = read_torch_folder(folder)
    assert info.synthetic
    assert "synthetic: true" in (folder / "info.yaml").read_text()
    assert f"wrote {folder}" in result.stdout and "SYNTHETIC" in result.stdout
    assert f"devine-onnx convert {folder} -o" in result.stdout  # the next step
    assert not [p for p in folder.parent.iterdir() if p.name.endswith(".partial")]


def test_example_with_output_converts_it_marked_synthetic(tmp_path):
    from devine_onnx.engines.runtime import open_model_session

    folder, onnx_path = tmp_path / "ex", tmp_path / "ex.onnx"
    result = invoke(["convert", "--example", folder, "-o", onnx_path])
    assert result.exit_code == 0, result.output
    assert "parity check passed" in result.stdout
    _, _, meta = open_model_session(onnx_path, device="cpu")
    assert meta["devine.kind"] == "features"
    assert meta["devine.synthetic_weights"] == "true"


def test_example_never_overwrites(tmp_path):
    folder = tmp_path / "mine"
    folder.mkdir()
    (folder / "notes.txt").write_text("keep me")
    result = invoke(["convert", "--example", folder])
    assert_refused(result, str(folder), "not empty")
    assert [p.name for p in folder.iterdir()] == ["notes.txt"]


def test_example_needs_no_tensorflow(tmp_path, monkeypatch):
    """--example needs PyTorch only: a missing convert (TensorFlow) extra is no error."""
    import devine_onnx.cli.convert as cli_convert

    monkeypatch.setattr(cli_convert, "_convert_extra_missing", lambda: ["tensorflow"])
    result = invoke(["convert", "--example", tmp_path / "ex"])
    assert result.exit_code == 0, result.output


def test_example_without_torch_is_one_line_with_the_install(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "torch", None)
    folder = tmp_path / "ex"
    result = invoke(["convert", "--example", folder])
    assert_refused(result, "devine-onnx[torch]", "--example")
    assert not folder.exists()


def test_conversion_still_needs_an_output(tmp_path):
    result = invoke(["convert", tmp_path / "some-folder"])
    assert result.exit_code == 2 and "-o" in result.output


def test_example_is_documented():
    """README and docs/devine_torch.md give the command (not the private helper)."""
    for doc in ("README.md", "docs/devine_torch.md"):
        text = (ROOT / doc).read_text(encoding="utf-8")
        assert re.search(r"devine-onnx convert --example \S+", text), doc
    assert "--example" in invoke(["convert", "--help"], terminal_width=200).stdout
