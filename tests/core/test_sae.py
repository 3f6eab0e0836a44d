"""metalens.sae: SAELens / Gemma Scope formats, encode/decode, splice-in metrics and training."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

import metalens
from metalens.sae import SAE, SAETrainConfig, evaluate_sae, load_sae, save_saelens, splice_edits, train_sae
from sae_fixture import ARCHS, checksums, expected, materialize, seeded_tensors
TEXTS = ["The cat sat on the mat.", "A quick brown fox jumps.", "Hello there, how are you?", "Numbers 1 2 3 4."]


def identity_sae(d: int, site: str | None = None) -> SAE:
    """ReLU dictionary with features +e_i and -e_i: relu(x) - relu(-x) = x exactly, whatever the sign."""
    eye = torch.eye(d)
    return SAE(W_enc=torch.cat([eye, -eye], dim=1), W_dec=torch.cat([eye, -eye], dim=0),
               b_enc=torch.zeros(2 * d), b_dec=torch.zeros(d), site=site)


def random_sae(architecture="standard", d_in=8, d_sae=16, seed=0, **kw) -> SAE:
    gen = torch.Generator().manual_seed(seed)
    return SAE(W_enc=torch.randn(d_in, d_sae, generator=gen), W_dec=torch.randn(d_sae, d_in, generator=gen),
               b_enc=torch.randn(d_sae, generator=gen), b_dec=torch.randn(d_in, generator=gen),
               architecture=architecture, **kw)


@pytest.fixture(scope="module")
def fixtures(tmp_path_factory) -> Path:
    """The three SAELens fixtures as sae-lens wrote them (weights rebuilt byte for byte, tests/sae_fixture.py)."""
    root = tmp_path_factory.mktemp("sae-fixtures")
    for arch in ARCHS:
        materialize(arch, root)
    return root


@pytest.fixture
def copy_fixture(fixtures, tmp_path):
    def copy(arch: str) -> Path:
        return Path(shutil.copytree(fixtures / arch, tmp_path / arch))
    return copy


# --- compatibility with SAELens (fixtures written by sae-lens 6.54.12, tools/sae_fixture/make_fixture.py)

@pytest.mark.parametrize("arch", ARCHS)
def test_saelens_fixture_encodes_to_saelens_features(arch, fixtures):
    sae = load_sae(fixtures / arch)
    x = seeded_tensors(arch)[1]
    features = sae.encode(x)
    ours, theirs = checksums(features, sae.decode(features, x)), expected(arch)
    # The same active features, and row summaries equal to float32 rounding. Measured against sae-lens's
    # full tensors when written: features 0.0 apart for all three, reconstructions <= 9.5e-07 (topk).
    assert ours["active_sha256"] == theirs["active_sha256"] and ours["l0"] == theirs["l0"]
    assert ours["features_argmax"] == theirs["features_argmax"]
    for key in ("features_sum", "features_sq", "features_max", "recon_sum", "recon_sq"):
        assert ours[key] == pytest.approx(theirs[key], rel=1e-5, abs=1e-5), key


def test_fixture_checksums_tell_a_wrong_normalisation(fixtures):
    sae = load_sae(fixtures / "standard")  # layer-norm input: skipping it must change what is encoded
    x = seeded_tensors("standard")[1]
    sae.normalize_activations = "none"
    features = sae.encode(x)
    ours, theirs = checksums(features, sae.decode(features, x)), expected("standard")
    assert ours["features_sum"] != pytest.approx(theirs["features_sum"], rel=1e-5, abs=1e-5)


@pytest.mark.parametrize("arch", ARCHS)
def test_fixture_metadata_reads_as_written(arch, fixtures):
    sae = load_sae(fixtures / arch)
    assert (sae.architecture, sae.site, sae.model) == (arch, "blocks.1.hook_resid_post", "tiny-gemma3")
    assert (sae.d_in, sae.d_sae) == (64, 128)
    assert sae.k == (8 if arch == "topk" else None)
    assert sae.normalize_activations == {"standard": "layer_norm", "topk": "constant_norm_rescale"}.get(arch, "none")


@pytest.mark.parametrize("arch", ARCHS)
def test_metalens_save_writes_the_files_saelens_wrote(arch, fixtures, tmp_path):
    save_saelens(load_sae(fixtures / arch), tmp_path / arch)
    ours, theirs = tmp_path / arch, fixtures / arch
    a, b = load_file(str(ours / "sae_weights.safetensors")), load_file(str(theirs / "sae_weights.safetensors"))
    assert sorted(a) == sorted(b) and all(torch.equal(a[k], b[k]) for k in a)
    cfg_a, cfg_b = (json.loads((p / "cfg.json").read_text()) for p in (ours, theirs))
    for key in ("architecture", "d_in", "d_sae", "apply_b_dec_to_input", "normalize_activations",
                "reshape_activations", "k", "rescale_acts_by_decoder_norm"):
        assert cfg_a.get(key) == cfg_b.get(key), key
    for key in ("hook_name", "model_name", "hook_head_index"):
        assert cfg_a["metadata"][key] == cfg_b["metadata"][key], key


# --- encode / decode

@pytest.mark.parametrize("arch", ARCHS)
def test_save_load_round_trip_keeps_encode_and_decode(arch, tmp_path):
    kw = {"k": 3} if arch == "topk" else {"threshold": torch.rand(16)} if arch == "jumprelu" else {}
    sae = random_sae(arch, site="blocks.0.hook_resid_post", model="tiny-gemma3", apply_b_dec_to_input=True, **kw)
    back = SAE.load(sae.save(tmp_path / "sae"))
    x = torch.randn(5, 8)
    assert torch.equal(back.encode(x), sae.encode(x))
    assert torch.equal(back.forward(x), sae.forward(x))
    assert (back.site, back.model, back.k) == (sae.site, sae.model, sae.k)


def test_identity_dictionary_reconstructs_exactly():
    x = torch.randn(4, 3, 8)
    assert torch.equal(identity_sae(8).forward(x), x)


def test_jumprelu_zeroes_pre_activations_at_or_below_threshold():
    sae = SAE(W_enc=torch.eye(4), W_dec=torch.eye(4), b_enc=torch.zeros(4), b_dec=torch.zeros(4),
              architecture="jumprelu", threshold=torch.tensor([0.5, 0.5, 0.5, 2.0]))
    f = sae.encode(torch.tensor([[0.4, 0.5, 0.6, 1.9]]))
    assert f.tolist() == [[0.0, 0.0, 0.6000000238418579, 0.0]]


def test_topk_keeps_exactly_k_features():
    sae = random_sae("topk", d_sae=32, k=5)
    sae.b_enc = sae.b_enc.abs() + 100  # every pre-activation positive: only the top-k rule zeroes any
    f = sae.encode(torch.randn(50, 8))
    assert ((f != 0).sum(-1) == 5).all()


# --- refused files

def test_weights_that_disagree_with_cfg_are_refused_naming_both(copy_fixture):
    folder = copy_fixture("standard")
    cfg = json.loads((folder / "cfg.json").read_text())
    cfg["d_sae"] = 256
    (folder / "cfg.json").write_text(json.dumps(cfg))
    with pytest.raises(ValueError, match=r"sae_weights\.safetensors: 'W_enc' has shape \[64, 128\], but cfg\.json says \[64, 256\]"):
        load_sae(folder)


def test_unknown_architecture_is_refused(copy_fixture):
    folder = copy_fixture("standard")
    cfg = json.loads((folder / "cfg.json").read_text())
    cfg["architecture"] = "gated"
    (folder / "cfg.json").write_text(json.dumps(cfg))
    with pytest.raises(ValueError, match=r"cfg\.json: unknown architecture 'gated'"):
        load_sae(folder)


def test_nan_weights_are_refused(copy_fixture):
    folder = copy_fixture("jumprelu")
    tensors = load_file(str(folder / "sae_weights.safetensors"))
    tensors["W_dec"][3, 3] = float("nan")
    save_file(tensors, str(folder / "sae_weights.safetensors"))
    with pytest.raises(ValueError, match="'W_dec' holds NaN"):
        load_sae(folder)


def test_missing_files_are_refused(copy_fixture, tmp_path):
    folder = copy_fixture("topk")
    (folder / "sae_weights.safetensors").unlink()
    with pytest.raises(FileNotFoundError, match="sae_weights.safetensors is missing beside cfg.json"):
        load_sae(folder)
    with pytest.raises(FileNotFoundError, match="holds none of cfg.json"):
        load_sae(tmp_path)


def test_sae_with_mismatched_tensors_is_refused():
    with pytest.raises(ValueError, match=r"'b_enc' has shape \[3\], expected \[16\]"):
        SAE(W_enc=torch.zeros(8, 16), W_dec=torch.zeros(16, 8), b_enc=torch.zeros(3), b_dec=torch.zeros(8))
    with pytest.raises(ValueError, match="unknown architecture 'gated'"):
        random_sae("gated")


# --- Gemma Scope 2 layout (synthetic files with the released names and folders)

def test_gemma_scope_2_sae_folder_reads_site_and_weights(tmp_path):
    folder = tmp_path / "resid_post" / "layer_1_width_16k_l0_small"
    folder.mkdir(parents=True)
    gs = {"w_enc": torch.randn(8, 16), "w_dec": torch.randn(16, 8), "b_enc": torch.randn(16),
          "b_dec": torch.randn(8), "threshold": torch.rand(16)}
    save_file(gs, str(folder / "params.safetensors"))
    sae = load_sae(folder)
    assert (sae.architecture, sae.site, sae.is_transcoder, sae.apply_b_dec_to_input) == (
        "jumprelu", "blocks.1.hook_resid_post", False, False)
    x = torch.randn(3, 8)
    pre = x @ gs["w_enc"] + gs["b_enc"]
    assert torch.equal(sae.encode(x), torch.relu(pre) * (pre > gs["threshold"]))


def test_gemma_scope_2_affine_transcoder_reads_both_sites_and_skip(tmp_path):
    folder = tmp_path / "transcoder" / "layer_2_width_16k_l0_small_affine"
    folder.mkdir(parents=True)
    skip = torch.randn(8, 6)
    save_file({"w_enc": torch.randn(8, 16), "w_dec": torch.randn(16, 6), "b_enc": torch.randn(16),
               "b_dec": torch.randn(6), "threshold": torch.rand(16), "affine_skip_connection": skip},
              str(folder / "params.safetensors"))
    (folder / "config.json").write_text(json.dumps({
        "architecture": "jump_relu", "model_name": "gemma-v3-270m-pt", "affine_connection": True,
        "hf_hook_point_in": "model.layers.2.pre_feedforward_layernorm.output",
        "hf_hook_point_out": "model.layers.2.post_feedforward_layernorm.output"}))
    sae = load_sae(folder)
    assert (sae.site, sae.out_site, sae.d_out) == ("blocks.2.hook_mlp_in", "blocks.2.hook_mlp_out", 6)
    x = torch.randn(3, 8)
    assert torch.allclose(sae.forward(x), sae.decode(sae.encode(x)) + x @ skip)


# --- splice-in and metrics on a tiny model

def test_identity_splice_equals_plain_forward(tiny_gemma):
    site = "blocks.1.hook_resid_post"
    batch = tiny_gemma.tokenize(TEXTS)
    ids, mask = batch["input_ids"], batch["attention_mask"]
    plain = metalens.run_with_cache(tiny_gemma, ids, mask, logits=True).logits
    sae = identity_sae(tiny_gemma.hf.config.hidden_size, site)
    spliced = metalens.run_with_cache(tiny_gemma, ids, mask, edits={site: sae.splice}, logits=True).logits
    assert torch.equal(spliced, plain)


def test_splice_changes_the_forward_for_a_lossy_dictionary(tiny_gemma):
    site = "blocks.1.hook_resid_post"
    ids = tiny_gemma.tokenize(TEXTS[:1])["input_ids"]
    plain = metalens.run_with_cache(tiny_gemma, ids, logits=True).logits
    sae = random_sae("topk", d_in=64, d_sae=32, k=2, site=site)
    spliced = metalens.run_with_cache(tiny_gemma, ids, edits=splice_edits(sae), logits=True).logits
    assert not torch.allclose(spliced, plain)


def test_evaluate_identity_sae_recovers_everything(tiny_gemma):
    site = "blocks.1.hook_resid_post"
    result = evaluate_sae(tiny_gemma, identity_sae(64, site), TEXTS, batch_size=2)
    assert result.variance_explained == pytest.approx(1.0, abs=1e-6)
    assert result.ce_spliced == pytest.approx(result.ce_clean, abs=1e-5)
    assert result.ce_recovered_zero == pytest.approx(1.0, abs=1e-4)
    assert result.ce_recovered_mean == pytest.approx(1.0, abs=1e-4)
    assert result.l0 == pytest.approx(64.0, abs=1.0)  # one of +e_i / -e_i per dimension (exact zeros aside)
    assert result.dead_share == 0.0
    assert set(result.to_dict()) >= {"variance_explained", "l0", "dead_share", "ce_recovered_zero", "ce_recovered_mean"}


def test_eval_result_round_trips(tiny_gemma, tmp_path):
    result = evaluate_sae(tiny_gemma, identity_sae(64, "blocks.0.hook_resid_post"), TEXTS[:2])
    assert type(result).load(result.save(tmp_path)) == result


# --- training

def small_config(architecture: str, **kw) -> SAETrainConfig:
    base = dict(site="blocks.1.hook_resid_post", width=64, architecture=architecture, k=8, lr=3e-3,
                batch_size=32, steps=40, seed=0, max_length=32, checkpoint_every=20, l1_coefficient=0.05,
                l0_coefficient=0.01, init_threshold=0.05, bandwidth=0.1)
    return SAETrainConfig(**{**base, **kw})


@pytest.mark.parametrize("architecture", ARCHS)
def test_training_reduces_the_loss(tiny_gemma, architecture):
    result = train_sae(tiny_gemma, TEXTS, small_config(architecture), progress=False)
    assert len(result.losses) == 40
    assert sum(result.losses[-5:]) < 0.7 * sum(result.losses[:5])
    assert result.sae.architecture == architecture and result.sae.site == "blocks.1.hook_resid_post"


def test_resumed_training_equals_uninterrupted(tiny_gemma, tmp_path):
    whole = train_sae(tiny_gemma, TEXTS, small_config("jumprelu", steps=8, checkpoint_every=2),
                      out=tmp_path / "whole", progress=False)
    train_sae(tiny_gemma, TEXTS, small_config("jumprelu", steps=4, checkpoint_every=2),
              out=tmp_path / "split", progress=False)
    resumed = train_sae(tiny_gemma, TEXTS, small_config("jumprelu", steps=8, checkpoint_every=2),
                        out=tmp_path / "split", progress=False)
    assert resumed.losses == whole.losses
    for name, tensor in whole.sae.tensors().items():
        assert torch.equal(resumed.sae.tensors()[name], tensor), name
    saved = type(whole).load(tmp_path / "whole")
    assert torch.equal(saved.sae.W_enc, whole.sae.W_enc) and saved.losses == whole.losses


def test_resume_with_other_settings_is_refused(tiny_gemma, tmp_path):
    train_sae(tiny_gemma, TEXTS, small_config("topk", steps=2, checkpoint_every=1), out=tmp_path, progress=False)
    with pytest.raises(ValueError, match=r"another run \(differs in \['config.k'\]\)"):
        train_sae(tiny_gemma, TEXTS, small_config("topk", steps=4, k=4), out=tmp_path, progress=False)


def test_bad_training_settings_are_refused_before_capturing(tiny_gemma):
    with pytest.raises(ValueError, match="k \\(99\\) cannot exceed width"):
        train_sae(tiny_gemma, TEXTS, small_config("topk", k=99), progress=False)
    with pytest.raises(ValueError, match="architecture 'gated'"):
        train_sae(tiny_gemma, TEXTS, small_config("gated"), progress=False)


def test_identity_splice_on_per_head_site_equals_plain_forward(tiny_gemma):
    site = "blocks.0.attn.hook_z"  # [batch, pos, head, d_head] flattened to d_in = 64 and back
    ids = tiny_gemma.tokenize(TEXTS[:2])["input_ids"]
    plain = metalens.run_with_cache(tiny_gemma, ids, logits=True).logits
    spliced = metalens.run_with_cache(tiny_gemma, ids, edits={site: identity_sae(64, site).splice}, logits=True).logits
    assert torch.equal(spliced, plain)


def test_transcoder_splices_its_output_site(tiny_gemma):
    sae = random_sae(d_in=64, d_sae=32, site="blocks.1.hook_resid_mid", out_site="blocks.1.hook_mlp_out")
    with pytest.raises(ValueError, match="splice_edits"):
        sae.splice(torch.zeros(1, 2, 64))
    result = evaluate_sae(tiny_gemma, sae, TEXTS[:2])
    assert result.site == "blocks.1.hook_mlp_out" and result.ce_spliced != result.ce_clean


def test_gemma_scope_1_npz_folder_reads_with_a_given_site(tmp_path):
    import numpy as np

    arrays = {"W_enc": np.random.randn(8, 16).astype("float32"), "W_dec": np.random.randn(16, 8).astype("float32"),
              "b_enc": np.zeros(16, "float32"), "b_dec": np.zeros(8, "float32"), "threshold": np.ones(16, "float32")}
    np.savez(tmp_path / "params.npz", **arrays)
    sae = load_sae(tmp_path, site="blocks.0.hook_resid_post", model="gemma-2-2b")
    assert (sae.architecture, sae.site, sae.model, sae.d_sae) == ("jumprelu", "blocks.0.hook_resid_post", "gemma-2-2b", 16)
    assert torch.equal(sae.W_enc, torch.from_numpy(arrays["W_enc"]))
