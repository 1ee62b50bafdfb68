"""Wire-in check: a tiny UNet built with kernels="triton" matches the same weights built with kernels="torch".

On CPU the Triton kernels run under the interpreter (tests/conftest.py). Spies count the kernel launches, so the test
also proves that every attention and GroupNorm call of the triton model reaches the Triton path.
"""
import importlib
import math

import torch

from inpaintlab.unet.config import UNetConfig
from inpaintlab.unet.model import UNetModel

# the modules (inpaintlab.kernels.attention / .group_norm as attributes are the functions of the same names)
att = importlib.import_module("inpaintlab.kernels.attention")
gn = importlib.import_module("inpaintlab.kernels.group_norm")

DEVICE = "cuda" if torch.cuda.is_available() else "cpu"
REL_TOL = 1e-4  # fp32 end to end: max |triton - torch| <= REL_TOL * max |torch|


def _tiny_config() -> UNetConfig:
    # widths 32/64, attention at both levels (8x8 and 4x4 tokens), 2 heads -> head dims 16 and 32
    return UNetConfig(in_channels=4, model_channels=32, channel_mult=(1, 2), num_res_blocks=1,
                      attention_resolutions=(1, 2), num_heads=2, context_dim=64)


@torch.no_grad()
def _randomise_(model: torch.nn.Module, seed: int = 0) -> None:
    """~1/sqrt(fan_in) weights, non-trivial norm affines, q/k x2 so attention is far from uniform."""
    g = torch.Generator().manual_seed(seed)
    for name, p in model.named_parameters():
        if p.ndim == 1:
            base = 1.0 if name.endswith("weight") and ("norm" in name or ".0.weight" in name) else 0.0
            p.copy_(base + 0.2 * torch.randn(p.shape, generator=g))
        else:
            p.copy_(torch.randn(p.shape, generator=g) / math.sqrt(math.prod(p.shape[1:])))
            if name.endswith(("to_q.weight", "to_k.weight")):
                p.mul_(2.0)


def _counting(monkeypatch, module, name):
    calls = []
    real = getattr(module, name)

    def spy(*args, **kwargs):
        calls.append(1)
        return real(*args, **kwargs)

    monkeypatch.setattr(module, name, spy)
    return calls


def test_tiny_unet_triton_matches_torch(monkeypatch):
    cfg = _tiny_config()
    torch_model = UNetModel(cfg, kernels="torch").to(DEVICE)
    _randomise_(torch_model)
    triton_model = UNetModel(cfg, kernels="triton").to(DEVICE)
    triton_model.load_state_dict(torch_model.state_dict())
    assert "kernels='triton'" in repr(triton_model)

    # batch 1: each interpreted GroupNorm launches B·32 programs per kernel and dominates this test's time
    g = torch.Generator().manual_seed(1)
    x = torch.randn(1, 4, 8, 8, generator=g).to(DEVICE)
    t = torch.tensor([321.5], device=DEVICE)
    context = torch.randn(1, 77, 64, generator=g).to(DEVICE)  # 77 tokens: the odd key tail of cross-attention

    attn_calls = _counting(monkeypatch, att, "attention_triton")
    gn_calls = _counting(monkeypatch, gn, "group_norm_triton")
    with torch.no_grad():
        expected = torch_model(x, t, context)
        assert not attn_calls and not gn_calls, "the torch model must not launch Triton kernels"
        got = triton_model(x, t, context)

    # every SpatialTransformer makes one self- and one cross-attention call, every GroupNorm module one call
    n_transformers = sum(type(m).__name__ == "SpatialTransformer" for m in triton_model.modules())
    assert len(attn_calls) == 2 * n_transformers
    n_norms = sum(type(m).__name__ == "GroupNorm" for m in triton_model.modules())
    assert len(gn_calls) == n_norms
    assert torch.isfinite(got).all()
    scale = expected.abs().max().item()
    err = (got - expected).abs().max().item()
    assert scale > 1e-2, "degenerate output: the comparison would prove nothing"
    assert err <= REL_TOL * scale, f"max |triton - torch| = {err:.3g}, {err / scale:.3g} of max |torch| {scale:.3g}"
