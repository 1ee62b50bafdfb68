"""The tiny random-weight checkpoint maker: deterministic, SD1-shaped, non-trivial outputs."""
from __future__ import annotations

import pytest
import torch
from safetensors.torch import load_file

from inpaintlab.checkpoint import CLIP_PREFIX, UNET_PREFIX, VAE_PREFIX
from inpaintlab.tiny import (
    TINY_CLIP, TINY_UNET, TINY_VAE, build_tiny_models, make_tiny_checkpoint, make_tiny_vae_file,
)


def test_configs_keep_the_sd1_structure():
    assert TINY_VAE.downscale == 8 and len(TINY_VAE.ch_mult) == 4
    assert TINY_UNET.context_dim == TINY_CLIP.width
    assert TINY_UNET.attention_resolutions == (2, 1) and TINY_UNET.num_heads == 8
    assert TINY_CLIP.vocab_size == 49408 and TINY_CLIP.max_positions == 77 and TINY_CLIP.heads == 1


def test_same_seed_same_bytes_and_global_rng_untouched(tmp_path):
    state = torch.random.get_rng_state()
    a = make_tiny_checkpoint(tmp_path / "a.safetensors", seed=5)
    b = make_tiny_checkpoint(tmp_path / "b.safetensors", seed=5)
    c = make_tiny_checkpoint(tmp_path / "c.safetensors", seed=6)
    assert torch.equal(torch.random.get_rng_state(), state)
    assert a.read_bytes() == b.read_bytes() != c.read_bytes()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.safetensors", "b.safetensors", "c.safetensors"]


def test_written_models_equal_the_in_memory_ones(tiny_inpainting_checkpoint):
    sd = load_file(tiny_inpainting_checkpoint)
    for prefix, module in zip((UNET_PREFIX, VAE_PREFIX, CLIP_PREFIX), build_tiny_models(inpainting=True)):
        for k, v in module.state_dict().items():
            assert torch.equal(sd[prefix + k], v), k
    assert sd[UNET_PREFIX + "input_blocks.0.0.weight"].shape == (32, 9, 3, 3)


def test_diffusers_recognises_the_layout(tiny_checkpoint, tiny_inpainting_checkpoint):
    single_file_utils = pytest.importorskip("diffusers.loaders.single_file_utils")
    assert single_file_utils.infer_diffusers_model_type(load_file(tiny_inpainting_checkpoint)) == "inpainting"
    assert single_file_utils.infer_diffusers_model_type(load_file(tiny_checkpoint)) == "v1"


def test_schedule_extra_matches_diffusers(tiny_checkpoint):
    schedulers = pytest.importorskip("diffusers.schedulers")
    ref = schedulers.DDPMScheduler(beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear").alphas_cumprod
    got = load_file(tiny_checkpoint)["alphas_cumprod"]
    # ours: float64 chain cast to fp32 (as ldm stores it); diffusers: fp32 chain. Measured max |diff| 4.8e-7.
    assert got.dtype == torch.float32
    torch.testing.assert_close(got, ref, rtol=0, atol=2e-6)


def test_weights_are_not_trivial():
    unet, vae, clip = build_tiny_models()
    norm_w = unet.input_blocks[1][1].norm.weight
    assert (norm_w - 1).abs().max() > 0.1 and unet.input_blocks[1][1].norm.bias.abs().max() > 0.05
    assert unet.input_blocks[1][1].proj_out.weight.abs().max() > 0.05  # zero-initialised in training
    assert unet.out[2].weight.abs().max() > 0.05
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():
        image = vae.decode(torch.randn(1, 4, 8, 8, generator=g))
        assert image.shape == (1, 3, 64, 64)  # latents are image / 8
        assert vae.encode(image.clamp(-1, 1)).mean.shape == (1, 4, 8, 8)
        assert image.std() > 0.2 and image[..., 1:, :].sub(image[..., :-1, :]).abs().mean() > 0.05  # texture
        x = torch.randn(1, 4, 8, 8, generator=g)
        tokens = torch.full((2, 77), 49407)
        tokens[:, 0] = 49406
        tokens[0, 1], tokens[1, 1] = 320, 2368  # "a" vs "cat"
        ctx = clip(tokens)
        assert (ctx[0] - ctx[1]).abs().max() > 0.1  # prompts matter
        eps = unet(x.expand(2, -1, -1, -1), torch.tensor([500.0, 500.0]), ctx)
        assert eps.std() > 0.2 and (eps[0] - eps[1]).abs().max() > 1e-3  # cross-attention reaches the output
        assert (unet(x, torch.tensor([10.0]), ctx[:1]) - eps[:1]).abs().max() > 1e-3  # timestep matters


def test_vae_file_layouts(tmp_path):
    conv = load_file(make_tiny_vae_file(tmp_path / "conv.safetensors"))
    lin = load_file(make_tiny_vae_file(tmp_path / "lin.safetensors", linear_attention=True, prefix="vae."))
    assert conv.keys() == {k[len("vae."):] for k in lin}
    for k, v in conv.items():
        assert torch.equal(lin["vae." + k].reshape(v.shape), v)
        if ".mid.attn_1." in k and k.endswith("weight") and "norm" not in k:
            assert v.ndim == 4 and lin["vae." + k].ndim == 2


def test_only_safetensors_are_written(tmp_path):
    with pytest.raises(ValueError, match="written as .safetensors"):
        make_tiny_checkpoint(tmp_path / "x.ckpt")
    with pytest.raises(ValueError, match="written as .safetensors"):
        make_tiny_vae_file(tmp_path / "vae.pt")
    assert list(tmp_path.iterdir()) == []
