"""Streaming capture to sharded safetensors: manifest, resume after a kill, multi-process merge."""
import json

import pytest
import torch

import metalens
from metalens import store

TEXTS = [f"text number {i} " + "x" * (i % 5) for i in range(11)]
SITES = ["blocks.0.hook_resid_post", "blocks.1.attn.hook_z"]


def _files(path):
    return {p.name: p.read_bytes() for p in sorted(path.iterdir()) if p.suffix in (".safetensors", ".json")}


def test_streamed_capture_equals_in_memory_capture(tiny_gemma, tmp_path):
    out = metalens.capture(tiny_gemma, TEXTS, SITES, positions="mean", batch_size=4, out=tmp_path / "a", progress=False)
    mem = metalens.capture(tiny_gemma, TEXTS, SITES, positions="mean", batch_size=4, progress=False)
    disk = metalens.load_activations(out)
    for site in SITES:
        torch.testing.assert_close(disk[site], mem[site])
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["model"] == "tiny-gemma3" and manifest["sites"] == SITES
    assert manifest["complete"] and len(manifest["shards"]) == 3
    assert manifest["n_tokens"] == int(mem.token_counts.sum())
    assert "torch" in manifest["versions"]


def test_resume_after_kill_gives_identical_files(tiny_gemma, tmp_path, monkeypatch):
    clean = metalens.capture(tiny_gemma, TEXTS, SITES, batch_size=3, out=tmp_path / "clean", progress=False)
    real_write, calls = store.ShardWriter.write, []

    def dying_write(self, *args):
        if len(calls) == 2:
            raise KeyboardInterrupt  # killed while working on the third shard
        calls.append(1)
        real_write(self, *args)

    monkeypatch.setattr(store.ShardWriter, "write", dying_write)
    with pytest.raises(KeyboardInterrupt):
        metalens.capture(tiny_gemma, TEXTS, SITES, batch_size=3, out=tmp_path / "killed", progress=False)
    monkeypatch.setattr(store.ShardWriter, "write", real_write)
    with pytest.raises(ValueError, match="unfinished"):
        metalens.load_activations(tmp_path / "killed")

    recomputed = []
    original = metalens.capture.__globals__["capture_batch"]
    monkeypatch.setitem(metalens.capture.__globals__, "capture_batch", lambda *a, **k: recomputed.append(1) or original(*a, **k))
    metalens.capture(tiny_gemma, TEXTS, SITES, batch_size=3, out=tmp_path / "killed", progress=False)
    assert len(recomputed) == 2  # 4 shards, 2 were already complete
    assert _files(tmp_path / "killed") == _files(clean)


def test_a_kill_during_compute_keeps_the_shard_being_written(tiny_gemma, tmp_path, monkeypatch):
    import time

    original = metalens.capture.__globals__["capture_batch"]
    calls = []
    real_save = store.save_file
    # A slow disk: the kill lands while shard 1 is still being written, so only waiting for it keeps it.
    monkeypatch.setattr(store, "save_file", lambda tensors, path: time.sleep(0.5) or real_save(tensors, path))

    def dying_batch(*args, **kwargs):
        calls.append(1)
        if len(calls) == 3:  # shard 1 was queued for the background thread a moment ago
            raise KeyboardInterrupt
        return original(*args, **kwargs)

    monkeypatch.setitem(metalens.capture.__globals__, "capture_batch", dying_batch)
    with pytest.raises(KeyboardInterrupt):
        metalens.capture(tiny_gemma, TEXTS, SITES, batch_size=3, out=tmp_path, progress=False)
    manifest = json.loads((tmp_path / "manifest.json").read_text())
    assert [s["file"] for s in manifest["shards"]] == ["shard-00000.safetensors", "shard-00001.safetensors"]
    assert not manifest["complete"]


def test_a_failed_background_write_raises_its_own_error(tiny_gemma, tmp_path, monkeypatch):
    real, saved = store.save_file, []

    def full_disk(tensors, path):
        if saved:
            raise OSError(28, "No space left on device")
        saved.append(path)
        real(tensors, path)

    monkeypatch.setattr(store, "save_file", full_disk)
    with pytest.raises(OSError, match="No space left"):
        metalens.capture(tiny_gemma, TEXTS, SITES, batch_size=3, out=tmp_path, progress=False)
    manifest = json.loads((tmp_path / "manifest.json").read_text())
    assert len(manifest["shards"]) == 1 and not manifest["complete"]  # the written shard stays; a rerun resumes


def test_corrupted_shard_is_recomputed(tiny_gemma, tmp_path):
    out = metalens.capture(tiny_gemma, TEXTS, SITES, batch_size=4, out=tmp_path / "c", progress=False)
    before = _files(out)
    (out / "shard-00001.safetensors").write_bytes(b"garbage")
    metalens.capture(tiny_gemma, TEXTS, SITES, batch_size=4, out=out, progress=False)
    assert _files(out) == before


def test_rerun_with_other_arguments_is_refused(tiny_gemma, tmp_path):
    metalens.capture(tiny_gemma, TEXTS, SITES, batch_size=4, out=tmp_path, progress=False)
    with pytest.raises(ValueError, match=r"other arguments.*positions"):
        metalens.capture(tiny_gemma, TEXTS, SITES, positions="mean", batch_size=4, out=tmp_path, progress=False)


def test_parts_from_several_processes_merge_into_one_capture(tiny_gemma, tmp_path):
    whole = metalens.capture(tiny_gemma, TEXTS, SITES, batch_size=2, progress=False)
    for i in range(3):
        metalens.capture(tiny_gemma, TEXTS, SITES, batch_size=2, out=tmp_path, shard_index=i, num_shards=3, progress=False)
        if i == 1:
            with pytest.raises(ValueError, match=r"parts \[2\] of 3"):
                metalens.merge_manifests(tmp_path)
    with pytest.raises(FileNotFoundError, match="metalens merge"):
        metalens.load_activations(tmp_path)
    metalens.merge_manifests(tmp_path)
    merged = metalens.load_activations(tmp_path)
    for site in SITES:
        torch.testing.assert_close(merged[site], whole[site], atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(merged.token_counts, whole.token_counts)


def test_capture_names_the_site_whose_activations_overflowed(tiny_gemma):
    from metalens import hooks

    bad_site = "blocks.1.hook_resid_post"
    with hooks(tiny_gemma, {bad_site: lambda x: x * float("nan")}):  # block 0's stay finite
        with pytest.raises(FloatingPointError, match=rf"'{bad_site}'.*dtype=torch.float32"):
            metalens.capture(tiny_gemma, TEXTS[:3], ["blocks.0.hook_resid_post", bad_site], progress=False)
