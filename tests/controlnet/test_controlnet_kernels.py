"""The ControlNet's GroupNorms and attentions go through inpaintlab.kernels like the UNet's: the tiny ControlNet
built with kernels="triton" launches the Triton kernels for every one of them (under Triton's interpreter on a CPU)
and matches kernels="torch" to fp32 rounding."""
import importlib

import torch

from inpaintlab.controlnet import ControlNet
from inpaintlab.tiny import build_tiny_controlnet

att = importlib.import_module("inpaintlab.kernels.attention")
gn = importlib.import_module("inpaintlab.kernels.group_norm")
DEVICE = "cuda" if torch.cuda.is_available() else "cpu"
REL_TOL = 1e-4  # as the UNet's wire-in check: fp32 end to end, max |triton - torch| <= REL_TOL * max |torch|


def _counting(monkeypatch, module, name):
    calls = []
    real = getattr(module, name)

    def spy(*args, **kwargs):
        calls.append(1)
        return real(*args, **kwargs)

    monkeypatch.setattr(module, name, spy)
    return calls


def test_tiny_controlnet_triton_matches_torch(monkeypatch):
    torch_model = build_tiny_controlnet().to(DEVICE)
    triton_model = ControlNet(torch_model.config, kernels="triton").to(DEVICE)
    triton_model.load_state_dict(torch_model.state_dict())
    g = torch.Generator().manual_seed(1)
    x = torch.randn(1, 4, 8, 8, generator=g).to(DEVICE)
    hint = (torch.rand(1, 3, 64, 64, generator=g) * 2 - 1).to(DEVICE)
    t = torch.tensor([321.5], device=DEVICE)
    context = torch.randn(1, 77, 64, generator=g).to(DEVICE)
    attn_calls = _counting(monkeypatch, att, "attention_triton")
    gn_calls = _counting(monkeypatch, gn, "group_norm_triton")
    with torch.no_grad():
        expected = torch_model(x, hint, t, context)
        assert not attn_calls and not gn_calls
        got = triton_model(x, hint, t, context)
    n_transformers = sum(type(m).__name__ == "SpatialTransformer" for m in triton_model.modules())
    n_norms = sum(type(m).__name__ == "GroupNorm" for m in triton_model.modules())
    assert n_transformers > 0 and len(attn_calls) == 2 * n_transformers
    assert n_norms > 0 and len(gn_calls) == n_norms
    for a, b in zip(got, expected):
        scale = b.abs().max().item()
        assert scale > 1e-2 and (a - b).abs().max().item() <= REL_TOL * scale
