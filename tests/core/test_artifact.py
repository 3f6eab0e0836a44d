"""The shared artifact layout: NAME.safetensors + NAME.json in one directory."""
import pytest
import torch

from metalens.artifact import read_artifact, write_artifact


def test_artifact_roundtrip_and_missing_directory_names_the_fix(tmp_path):
    weight = torch.arange(6.0).reshape(2, 3).T  # non-contiguous on purpose
    write_artifact(tmp_path / "a", "probe", {"weight": weight}, {"layer": 3, "path": tmp_path})
    tensors, meta = read_artifact(tmp_path / "a", "probe", "unused")
    assert torch.equal(tensors["weight"], weight)
    # non-JSON values are written as strings; every artifact records its format
    assert meta == {"layer": 3, "path": str(tmp_path), "format": {"name": "probe", "version": 1}}
    with pytest.raises(FileNotFoundError, match="No probe.json in .*: write one first"):
        read_artifact(tmp_path / "b", "probe", "write one first")


def test_artifact_from_a_newer_format_is_refused_with_the_fix(tmp_path):
    write_artifact(tmp_path, "axes", {"w": torch.ones(2)}, {}, version=99)
    with pytest.raises(ValueError, match="format version 99.*upgrade metalens"):
        read_artifact(tmp_path, "axes", "unused")
