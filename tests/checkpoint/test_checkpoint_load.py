"""load_models / read_vae on tiny real-layout files: strict round trips, accepted variants, rejected files.

Oracle: the in-memory networks that were saved (`inpaintlab.tiny.build_tiny_models`); a loaded model must hold
bit-identical weights and give bit-identical outputs (tolerance 0) in fp32.
"""
from __future__ import annotations

import functools
import hashlib
import re

import pytest
import torch
from safetensors.torch import load_file, save_file

from inpaintlab.checkpoint import (
    CLIP_PREFIX, UNET_PREFIX, VAE_PREFIX, CheckpointError, Models, load_models, read_vae,
)
from inpaintlab.tiny import (
    TINY_CLIP, build_tiny_models, build_tiny_vae, make_tiny_checkpoint, make_tiny_vae_file, tiny_state_dict,
)


@functools.cache
def reference(inpainting: bool = False) -> tuple:
    """The networks saved in the tiny files (seed 0); built once, only read by the tests."""
    return build_tiny_models(inpainting=inpainting, seed=0)


@functools.cache
def reference_vae_file() -> torch.nn.Module:
    return build_tiny_vae(seed=0)


def snapshot(directory) -> dict:
    """Names, bytes and mtimes of every file below `directory`."""
    return {p.relative_to(directory): (p.read_bytes(), p.stat().st_mtime_ns)
            for p in sorted(directory.rglob("*")) if p.is_file()}


def assert_same_weights(loaded: torch.nn.Module, ref: torch.nn.Module, dtype=None) -> None:
    ref_sd, got = ref.state_dict(), loaded.state_dict()
    assert got.keys() == ref_sd.keys()
    for k, v in ref_sd.items():
        want = v if dtype is None or not v.is_floating_point() else v.to(dtype)
        assert got[k].dtype == want.dtype and torch.equal(got[k], want), k


def outputs(unet, vae, text_encoder, in_channels: int) -> list[torch.Tensor]:
    g = torch.Generator().manual_seed(1)
    x = torch.randn(2, in_channels, 8, 8, generator=g)
    ctx = torch.randn(2, 77, TINY_CLIP.width, generator=g)
    image = torch.rand(1, 3, 32, 32, generator=g) * 2 - 1
    tokens = torch.randint(0, TINY_CLIP.vocab_size, (2, 77), generator=g)
    with torch.no_grad():
        return [unet(x, torch.tensor([999.0, 10.5]), ctx), vae.encode(image).mean, vae.decode(x[:1, :4]),
                text_encoder(tokens)]


@pytest.mark.parametrize("inpainting", [False, True], ids=["4ch", "9ch"])
def test_round_trip(request, inpainting):
    path = request.getfixturevalue("tiny_inpainting_checkpoint" if inpainting else "tiny_checkpoint")
    before = snapshot(path.parent)
    models = load_models(path, kernels="torch")
    assert snapshot(path.parent) == before  # nothing written or modified next to the checkpoint

    assert isinstance(models, Models)
    assert models.is_inpainting is inpainting
    assert models.scale_factor == 0.18215
    assert models.model_name == path.stem
    assert models.model_hash == hashlib.sha256(path.read_bytes()).hexdigest()[:10]
    assert models.vae_name is None and models.vae_hash is None
    assert models.dtype == torch.float32 and models.device == torch.device("cpu")
    refs = reference(inpainting)
    for loaded, ref in zip((models.unet, models.vae, models.text_encoder), refs):
        assert not loaded.training
        assert not any(p.requires_grad for p in loaded.parameters())
        assert loaded.config == ref.config
        assert_same_weights(loaded, ref)
        repr(loaded)
    in_channels = 9 if inpainting else 4
    for got, want in zip(outputs(models.unet, models.vae, models.text_encoder, in_channels),
                         outputs(*refs, in_channels)):
        assert want.abs().max() > 0.1  # non-trivial outputs
        assert torch.equal(got, want)


def test_file_holds_exactly_the_model_keys_plus_allow_listed_extras(tiny_checkpoint):
    sd = load_file(tiny_checkpoint)
    unet, vae, clip = reference()
    expected = ({UNET_PREFIX + k for k in unet.state_dict()} | {VAE_PREFIX + k for k in vae.state_dict()}
                | {CLIP_PREFIX + k for k in clip.state_dict()})
    extras = set(sd) - expected
    assert expected <= set(sd)
    assert extras == {"alphas_cumprod", "model_ema.decay", "model_ema.num_updates",
                      CLIP_PREFIX + "embeddings.position_ids"}


@pytest.mark.parametrize("prefix, linear", [("", False), (VAE_PREFIX, False), ("vae.", False), ("", True),
                                            ("vae.", True)])
def test_read_vae_variants(tmp_path, prefix, linear):
    path = make_tiny_vae_file(tmp_path / "vae.safetensors", seed=0, linear_attention=linear, prefix=prefix)
    stored = load_file(path)
    assert all(k.startswith(prefix) for k in stored)
    assert stored[prefix + "decoder.mid.attn_1.q.weight"].ndim == (2 if linear else 4)
    before = snapshot(tmp_path)
    sd = read_vae(path)
    assert snapshot(tmp_path) == before
    ref = reference_vae_file().state_dict()
    assert sd.keys() == ref.keys()
    assert all(torch.equal(sd[k], ref[k]) for k in ref)


@pytest.mark.parametrize("prefix, linear", [("", False), ("vae.", True)])
def test_separate_vae_file(tmp_path, tiny_checkpoint, prefix, linear):
    vae_path = make_tiny_vae_file(tmp_path / "my-vae.safetensors", seed=0, linear_attention=linear, prefix=prefix)
    before = snapshot(tmp_path) | snapshot(tiny_checkpoint.parent)
    models = load_models(tiny_checkpoint, vae_path, kernels="torch")
    assert snapshot(tmp_path) | snapshot(tiny_checkpoint.parent) == before
    ref = reference_vae_file()
    assert_same_weights(models.vae, ref)
    assert not torch.equal(ref.decoder.conv_out.weight, reference()[1].decoder.conv_out.weight)
    assert models.vae_name == "my-vae.safetensors"
    assert models.vae_hash == hashlib.sha256(vae_path.read_bytes()).hexdigest()[:10]
    assert_same_weights(models.unet, reference()[0])
    image = torch.rand(1, 3, 16, 16, generator=torch.Generator().manual_seed(2)) * 2 - 1
    with torch.no_grad():
        assert torch.equal(models.vae.encode(image).mean, ref.encode(image).mean)


def test_separate_vae_ckpt_with_loss_and_ema_keys(tmp_path):
    ref = build_tiny_vae(seed=3)
    sd = {k: v.clone() for k, v in ref.state_dict().items()}
    sd.update({"loss.logvar": torch.zeros(()), "loss.discriminator.main.0.weight": torch.zeros(4, 3, 4, 4),
               "model_ema.decay": torch.tensor(0.999), "model_ema.num_updates": torch.tensor(5)})
    path = tmp_path / "vae.ckpt"
    torch.save({"state_dict": sd, "global_step": 840000}, path)
    with pytest.raises(CheckpointError, match="refusing to read a pickle"):
        read_vae(path)
    vae_sd = read_vae(path, allow_pickle=True)
    assert vae_sd.keys() == ref.state_dict().keys()


def test_bad_vae_files(tmp_path, tiny_checkpoint):
    with pytest.raises(CheckpointError, match="is a full checkpoint"):
        read_vae(tiny_checkpoint)
    vae_sd = reference_vae_file().state_dict()
    cases = {
        "diffusers": ({"decoder.up_blocks.0.resnets.0.norm1.weight": torch.zeros(4)}, "diffusers layout"),
        "extra": ({**vae_sd, "encoder.extra.weight": torch.zeros(1), "foo": torch.zeros(1)},
                  r"1 unexpected key\(s\) for a VAE with prefix ''"),
        "mixed": ({**{"vae." + k: v for k, v in vae_sd.items()}, "encoder.conv_in.weight": torch.zeros(1)},
                  r"unexpected key\(s\) for a VAE with prefix 'vae.': 'encoder.conv_in.weight'"),
        "unet-only": ({"input_blocks.0.0.weight": torch.zeros(1)}, "no VAE keys found"),
    }
    for name, (sd, message) in cases.items():
        path = tmp_path / f"{name}.safetensors"
        save_file({k: v.contiguous() for k, v in sd.items()}, path)
        with pytest.raises(CheckpointError, match=message):
            read_vae(path)
    # Keys that fit the prefix rules but not the model: caught by the strict loader with shapes named.
    bad = dict(vae_sd)
    bad["decoder.conv_out.bias"] = torch.zeros(5)
    path = tmp_path / "misshaped.safetensors"
    save_file({k: v.contiguous() for k, v in bad.items()}, path)
    with pytest.raises(CheckpointError, match=re.escape("vae: the weights do not fit the model: 1 shape mismatch(es): "
                                                        "decoder.conv_out.bias: expected [3], found [5]")):
        load_models(tiny_checkpoint, path)


def test_old_clip_layout_without_text_model(tmp_path, tiny_checkpoint):
    sd = load_file(tiny_checkpoint)
    old = {k.replace(CLIP_PREFIX, "cond_stage_model.transformer."): v for k, v in sd.items()}
    assert not any("text_model." in k for k in old)
    path = tmp_path / "old-clip.safetensors"
    save_file(old, path)
    models = load_models(path, kernels="torch")
    assert_same_weights(models.text_encoder, reference()[2])


@pytest.mark.parametrize("stored", [torch.float16, torch.bfloat16])
def test_half_precision_file_is_cast_on_load(tmp_path, stored):
    path = make_tiny_checkpoint(tmp_path / "half.safetensors", inpainting=True, dtype=stored)
    assert load_file(path)[UNET_PREFIX + "out.2.weight"].dtype == stored
    models = load_models(path, dtype=torch.float32, kernels="torch")
    for loaded, ref in zip((models.unet, models.vae, models.text_encoder), reference(True)):
        ref_sd = ref.state_dict()
        for k, v in loaded.state_dict().items():
            assert v.dtype == torch.float32
            assert torch.equal(v, ref_sd[k].to(stored).float()), k


def test_fp32_file_loaded_as_bf16(tiny_checkpoint):
    models = load_models(tiny_checkpoint, dtype=torch.bfloat16, kernels="torch")
    assert models.dtype == torch.bfloat16
    for loaded, ref in zip((models.unet, models.vae, models.text_encoder), reference()):
        assert_same_weights(loaded, ref, dtype=torch.bfloat16)


def test_pickled_checkpoint(tmp_path):
    sd = tiny_state_dict(*reference())
    path = tmp_path / "tiny.ckpt"
    torch.save({"state_dict": sd, "global_step": 1}, path)
    before = snapshot(tmp_path)
    with pytest.raises(CheckpointError, match="refusing to read a pickle checkpoint"):
        load_models(path)
    models = load_models(path, allow_pickle=True, kernels="torch")
    assert snapshot(tmp_path) == before
    assert models.model_name == "tiny"
    assert_same_weights(models.unet, reference()[0])


def edited_file(tmp_path, tiny_checkpoint, edit) -> tuple:
    sd = load_file(tiny_checkpoint)
    edit(sd)
    path = tmp_path / "edited.safetensors"
    save_file(sd, path)
    return path, snapshot(tmp_path)


FF = UNET_PREFIX + "middle_block.1.transformer_blocks.0.ff.net.2.weight"


@pytest.mark.parametrize("edit, message", [
    (lambda sd: sd.pop(UNET_PREFIX + "out.0.bias"),
     r"unet: the weights do not fit the model: 1 missing key\(s\): 'model.diffusion_model.out.0.bias'"),
    (lambda sd: sd.update({FF: torch.zeros(64, 255)}),
     re.escape(f"unet: the weights do not fit the model: 1 shape mismatch(es): {FF}: expected [64, 256], "
               "found [64, 255]")),
    (lambda sd: sd.update({CLIP_PREFIX + "encoder.layers.0.self_attn.q_proj.bias": torch.zeros(63)}),
     re.escape("text_encoder: the weights do not fit the model: 1 shape mismatch(es): "
               "cond_stage_model.transformer.text_model.encoder.layers.0.self_attn.q_proj.bias: expected [64], "
               "found [63]")),
    (lambda sd: sd.update({UNET_PREFIX + "extra.weight": torch.zeros(2)}),
     r"unet: .*1 unexpected key\(s\): 'model.diffusion_model.extra.weight'"),
    (lambda sd: sd.update({"lora_te_text_model_encoder_layers_0_mlp_fc1.alpha": torch.zeros(())}),
     r"1 unexpected key\(s\) for an SD 1.x checkpoint, outside .*'lora_te_text_model_encoder_layers_0_mlp_fc1.alpha'"),
    (lambda sd: sd.update({"cond_stage_model.model.ln_final.weight": torch.zeros(1024)}),
     r"unexpected key\(s\) for an SD 2.x checkpoint, outside .*'cond_stage_model.model.'.*"
     r"'cond_stage_model.transformer.text_model."),
    (lambda sd: sd.update({"conditioner.embedders.0.transformer.text_model.final_layer_norm.weight": torch.zeros(3)}),
     r"sgm conditioner keys .* without SDXL's OpenCLIP bigG .*cannot tell the model family"),
    (lambda sd: [sd.pop(CLIP_PREFIX + f"encoder.layers.1.mlp.fc{i}.{p}") for i in (1, 2) for p in ("weight", "bias")],
     r"text_encoder: the weights do not fit the model: 4 missing key\(s\): "
     r"'cond_stage_model.transformer.text_model.encoder.layers.1.mlp.fc1.weight', "),
], ids=["missing", "misshaped-unet", "misshaped-clip", "extra-unet", "extra-toplevel", "sd2", "sdxl", "missing-layer"])
def test_bad_checkpoints_are_refused_and_untouched(tmp_path, tiny_checkpoint, edit, message):
    path, before = edited_file(tmp_path, tiny_checkpoint, edit)
    with pytest.raises(CheckpointError, match=message):
        load_models(path, kernels="torch")
    assert snapshot(tmp_path) == before


def test_vae_file_as_model_and_bad_arguments(tmp_path, tiny_checkpoint):
    vae_path = make_tiny_vae_file(tmp_path / "vae.safetensors")
    with pytest.raises(CheckpointError, match="looks like a standalone VAE file"):
        load_models(vae_path)
    with pytest.raises(ValueError, match="unknown kernel backend"):
        load_models(tiny_checkpoint, kernels="cuda")
    with pytest.raises(ValueError, match="floating-point torch.dtype"):
        load_models(tiny_checkpoint, dtype=torch.int8)
    with pytest.raises(FileNotFoundError):
        load_models(tmp_path / "missing.safetensors")
    with pytest.raises(FileNotFoundError):
        load_models(tiny_checkpoint, tmp_path / "missing-vae.safetensors")


def test_file_without_known_prefixes(tmp_path):
    path = tmp_path / "lora.safetensors"
    save_file({"lora_unet_down_blocks_0_attentions_0_proj_in.alpha": torch.zeros(()), "weight": torch.zeros(2)}, path)
    with pytest.raises(CheckpointError, match=r"lora.safetensors: LoRA checkpoint \(key 'lora_unet_.*is not "
                                              r"supported; inpaintlab supports Stable Diffusion 1.x, 2.x"):
        load_models(path)


@pytest.mark.cuda
def test_load_on_cuda_in_fp16(tiny_inpainting_checkpoint):
    models = load_models(tiny_inpainting_checkpoint, device="cuda", dtype=torch.float16, kernels="auto")
    assert models.device == torch.device("cuda") and models.dtype == torch.float16
    for loaded, ref in zip((models.unet, models.vae, models.text_encoder), reference(True)):
        ref_sd = ref.state_dict()
        for k, v in loaded.state_dict().items():
            assert v.is_cuda and v.dtype == (torch.float16 if ref_sd[k].is_floating_point() else ref_sd[k].dtype)
            assert torch.equal(v.cpu(), ref_sd[k].to(v.dtype)), k
    with torch.no_grad():
        eps = models.unet(torch.randn(1, 9, 8, 8, device="cuda", dtype=torch.float16), torch.tensor([500.0]),
                          torch.randn(1, 77, TINY_CLIP.width, device="cuda", dtype=torch.float16))
    assert eps.dtype == torch.float16 and torch.isfinite(eps).all()
