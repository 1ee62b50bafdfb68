"""Oracle parity: our UNet vs diffusers' UNet2DConditionModel loaded through diffusers' own ldm converter.

The ldm-keyed state dict goes to a safetensors file with the `model.diffusion_model.` prefix, is read back,
converted by `convert_ldm_unet_checkpoint` and loaded strictly; both models then predict eps for random x,
fractional timesteps and a random 77-token context.
"""
from __future__ import annotations

import pytest
import torch
from unet_helpers import PREFIX, diffusers_convert, reinit_, tiny_config

from inpaintlab.unet import UNetModel

safetensors_torch = pytest.importorskip("safetensors.torch")
diffusers = pytest.importorskip("diffusers")

# fp32, the same arithmetic in another order: measured max|diff| / max|eps| 1.4e-6 .. 2.1e-6 (eps up to ~3).
REL_TOL = 1e-5


def _oracle(model: UNetModel, tmp_path) -> torch.nn.Module:
    path = tmp_path / "unet.safetensors"
    safetensors_torch.save_file({PREFIX + k: v.contiguous() for k, v in model.state_dict().items()}, str(path))
    dconfig, converted = diffusers_convert(safetensors_torch.load_file(str(path)), model.config)
    ref = diffusers.UNet2DConditionModel(**dconfig)
    ref.load_state_dict(converted, strict=True)
    return ref.eval()


def _inputs(cfg, seed: int = 1, b: int = 2, hw: tuple[int, int] = (16, 24), tokens: int = 77):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(b, cfg.in_channels, *hw, generator=g)
    t = torch.tensor([999.0, 17.25][:b])  # fractional timestep, as k-diffusion's sigma -> t interpolation gives
    context = torch.randn(b, tokens, cfg.context_dim, generator=g)
    return x, t, context


@pytest.mark.parametrize("in_channels,num_res_blocks", [(4, 2), (9, 1)])
def test_matches_diffusers(tmp_path, in_channels, num_res_blocks):
    model = reinit_(UNetModel(tiny_config(in_channels, num_res_blocks))).eval()
    ref = _oracle(model, tmp_path)
    x, t, context = _inputs(model.config)
    with torch.inference_mode():
        ours = model(x, t, context)
        theirs = ref(x, t, encoder_hidden_states=context).sample
    scale = theirs.abs().max().item()
    err = (ours - theirs).abs().max().item()
    assert ours.shape == (2, 4, 16, 24)
    assert scale > 0.1, "degenerate outputs would make the comparison meaningless"
    assert err <= REL_TOL * scale, f"max|diff| {err:.3g} vs tolerance {REL_TOL * scale:.3g} (eps scale {scale:.3g})"


def test_negative_control_qk_swap(tmp_path):
    """Swapping to_q/to_k in one self-attention must move eps far beyond the parity tolerance."""
    model = reinit_(UNetModel(tiny_config())).eval()
    ref = _oracle(model, tmp_path)
    attn = model.input_blocks[1][1].transformer_blocks[0].attn1
    with torch.no_grad():
        q = attn.to_q.weight.clone()
        attn.to_q.weight.copy_(attn.to_k.weight)
        attn.to_k.weight.copy_(q)
    x, t, context = _inputs(model.config)
    with torch.inference_mode():
        ours = model(x, t, context)
        theirs = ref(x, t, encoder_hidden_states=context).sample
    scale = theirs.abs().max().item()
    assert (ours - theirs).abs().max().item() > 100 * REL_TOL * scale


def test_long_context_and_scalar_timestep(tmp_path):
    """A1111 feeds 77*k tokens for long prompts; a scalar timestep is broadcast over the batch."""
    model = reinit_(UNetModel(tiny_config(num_res_blocks=1))).eval()
    ref = _oracle(model, tmp_path)
    x, _, context = _inputs(model.config, seed=3, hw=(8, 8), tokens=154)
    with torch.inference_mode():
        ours = model(x, torch.tensor(500.5), context)
        theirs = ref(x, torch.tensor(500.5), encoder_hidden_states=context).sample
    assert (ours - theirs).abs().max().item() <= REL_TOL * theirs.abs().max().item()
