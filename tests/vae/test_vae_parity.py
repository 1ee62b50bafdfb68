"""Tiny VAE vs diffusers 0.42.1 after diffusers' own ldm converter (spec checkpoints.md §6).

The weights are re-initialised (vae_helpers.reinit_), written to safetensors in the layouts found in the wild, converted
with `create_vae_diffusers_config_from_ldm` + `convert_ldm_vae_checkpoint`, and loaded strictly into diffusers'
AutoencoderKL. Tolerance: fp32 round-off, max|Δ| <= 1e-5 * max|reference| (measured about 7e-7 relative for the
moments and 1.6e-6 for the decoded image, with outputs of magnitude about 3).
"""
import pytest
import torch
from safetensors.torch import load_file, save_file

from inpaintlab.vae import AutoencoderKL, VAEConfig, conv_attention_weights
from vae_helpers import tiny_config, tiny_vae  # noqa: F401  (fixtures)

diffusers = pytest.importorskip("diffusers")
from diffusers.loaders.single_file_utils import (  # noqa: E402
    convert_ldm_vae_checkpoint,
    create_vae_diffusers_config_from_ldm,
)

REL_TOL = 1e-5


def original_config(cfg: VAEConfig) -> dict:
    """The first-stage part of v1-inference.yaml as a dict, with the tiny widths."""
    ddconfig = dict(double_z=True, z_channels=cfg.z_channels, resolution=256, in_channels=cfg.in_channels,
                    out_ch=cfg.out_ch, ch=cfg.ch, ch_mult=list(cfg.ch_mult), num_res_blocks=cfg.num_res_blocks,
                    attn_resolutions=[], dropout=0.0)
    return {"model": {"params": {"scale_factor": cfg.scale_factor, "first_stage_config": {
        "params": {"embed_dim": cfg.embed_dim, "ddconfig": ddconfig}}}}}


def diffusers_vae(checkpoint: dict, cfg: VAEConfig):
    config = create_vae_diffusers_config_from_ldm(original_config(cfg), checkpoint)
    model = diffusers.AutoencoderKL(**config).eval()
    model.load_state_dict(convert_ldm_vae_checkpoint(checkpoint, config), strict=True)
    return model


def linear_attention(sd: dict) -> dict:
    """The community layout: mid-attention q/k/v/proj_out stored as Linear [C,C]."""
    return {k: v[:, :, 0, 0] if ".mid.attn_1." in k and k.endswith("weight") and v.ndim == 4 else v
            for k, v in sd.items()}


def max_err(a: torch.Tensor, b: torch.Tensor) -> tuple[float, float]:
    return (a - b).abs().max().item(), b.abs().max().item()


def inputs(cfg: VAEConfig):
    g = torch.Generator().manual_seed(1)
    x = torch.rand(2, cfg.in_channels, 24, 40, generator=g) * 2 - 1  # non-square: exercises the asymmetric pad
    z = torch.randn(2, cfg.embed_dim, 6, 10, generator=g)
    return x, z


@pytest.mark.parametrize("layout", ["first_stage_model.", "", "linear-attention"])
def test_matches_diffusers_after_conversion(tiny_vae, tiny_config, tmp_path, layout):
    prefix = "first_stage_model." if layout == "linear-attention" else layout
    sd = tiny_vae.state_dict()
    if layout == "linear-attention":
        sd = linear_attention(sd)
        assert sd["decoder.mid.attn_1.proj_out.weight"].ndim == 2
    path = tmp_path / "vae.safetensors"
    save_file({prefix + k: v.contiguous() for k, v in sd.items()}, str(path))
    checkpoint = load_file(str(path))

    ref = diffusers_vae(checkpoint, tiny_config)
    ours_sd = conv_attention_weights({k[len(prefix):]: v for k, v in checkpoint.items()})
    ours = AutoencoderKL(VAEConfig.from_state_dict(ours_sd)).eval()
    ours.load_state_dict(ours_sd, strict=True)

    x, z = inputs(tiny_config)
    with torch.no_grad():
        checks = {
            "moments": (ours.quant_conv(ours.encoder(x)), ref.quant_conv(ref.encoder(x))),
            "mean": (ours.encode(x).mean, ref.encode(x).latent_dist.mean),
            "logvar": (ours.encode(x).logvar, ref.encode(x).latent_dist.logvar),
            "std": (ours.encode(x).std, ref.encode(x).latent_dist.std),
            "decode": (ours.decode(z), ref.decode(z).sample),
        }
    for name, (a, b) in checks.items():
        assert a.shape == b.shape, name
        err, scale = max_err(a, b)
        assert scale > 0.5, f"{name}: reference output too small to be a meaningful comparison"
        assert err <= REL_TOL * scale, f"{name}: max|Δ| {err:.3g} > {REL_TOL} * {scale:.3g}"


@pytest.mark.parametrize("part", ["encoder", "decoder"])
def test_swapped_query_key_is_detected(tiny_vae, tiny_config, part):
    """Negative control: the comparison above sees a q/k swap in one mid attention block."""
    checkpoint = {"first_stage_model." + k: v for k, v in tiny_vae.state_dict().items()}
    ref = diffusers_vae(checkpoint, tiny_config)
    sd = dict(tiny_vae.state_dict())
    for kind in ("weight", "bias"):
        q, k = f"{part}.mid.attn_1.q.{kind}", f"{part}.mid.attn_1.k.{kind}"
        sd[q], sd[k] = sd[k], sd[q]
    broken = AutoencoderKL(tiny_config).eval()
    broken.load_state_dict(sd, strict=True)
    x, z = inputs(tiny_config)
    with torch.no_grad():
        if part == "encoder":
            err, scale = max_err(broken.encode(x).mean, ref.encode(x).latent_dist.mean)
        else:
            err, scale = max_err(broken.decode(z), ref.decode(z).sample)
    assert err > 1000 * REL_TOL * scale, f"q/k swap gave only max|Δ| {err:.3g}"


def test_odd_latent_size_matches_diffusers(tiny_vae, tiny_config):
    """A 36x20 image (this VAE downscales by 4) has a 9x5 latent, as 600x400 has 75x50 with SD's VAE: both ways
    match diffusers (the VAE has no skips, so nothing is resized)."""
    ref = diffusers_vae({k: v.contiguous() for k, v in tiny_vae.state_dict().items()}, tiny_config)
    g = torch.Generator().manual_seed(3)
    x = torch.rand(1, 3, 36, 20, generator=g) * 2 - 1
    z = torch.randn(1, 4, 9, 5, generator=g)
    with torch.no_grad():
        pairs = [(tiny_vae.encode(x).mean, ref.encode(x).latent_dist.mean), (tiny_vae.decode(z), ref.decode(z).sample)]
    for a, b in pairs:
        assert a.shape == b.shape and a.shape[-2:] in ((9, 5), (36, 20))
        err, scale = max_err(a, b)
        assert scale > 0.5 and err <= REL_TOL * scale
