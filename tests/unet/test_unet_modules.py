"""Construction, repr, input validation, numerics of the individual pieces, and the CPU GEMM convolution path."""
from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from unet_helpers import reinit_, tiny_config

from inpaintlab.kernels import GroupNorm
from inpaintlab.unet import UNetConfig, UNetModel
from inpaintlab.unet.attention import GEGLU, BasicTransformerBlock, CrossAttention, FeedForward, SpatialTransformer
from inpaintlab.unet.blocks import Conv2d, Downsample, ResBlock, Upsample, timestep_embedding
from inpaintlab.unet.model import TimestepEmbedSequential


def _inputs(cfg, b=2, hw=(16, 8), tokens=77, seed=0):
    g = torch.Generator().manual_seed(seed)
    return (torch.randn(b, cfg.in_channels, *hw, generator=g), torch.tensor([10.5, 900.0][:b]),
            torch.randn(b, tokens, cfg.context_dim, generator=g))


@pytest.mark.parametrize("kernels", ["torch", "triton", "auto"])
def test_construct_and_repr_every_module(kernels):
    model = UNetModel(tiny_config(9), kernels=kernels)
    kinds = set()
    for name, module in model.named_modules():
        assert repr(module)
        kinds.add(type(module))
        if isinstance(module, GroupNorm):
            assert module.kernels == kernels
            assert module.silu == (not name.endswith(".norm")), name  # SiLU fused everywhere except ST.norm
            assert module.eps == (1e-6 if name.endswith(".norm") else 1e-5), name
        if isinstance(module, CrossAttention):
            assert module.kernels == kernels and module.scale == module.dim_head ** -0.5
        if isinstance(module, torch.nn.LayerNorm):
            assert module.eps == 1e-5
    assert {UNetModel, TimestepEmbedSequential, ResBlock, SpatialTransformer, BasicTransformerBlock, CrossAttention,
            FeedForward, GEGLU, Downsample, Upsample, Conv2d, GroupNorm} <= kinds
    assert "kernels='%s'" % kernels in repr(model)


def test_unknown_kernels_name():
    with pytest.raises(ValueError, match="unknown kernel backend 'cuda'"):
        UNetModel(tiny_config(), kernels="cuda")


def test_ldm_container_indices():
    keys = set(UNetModel(tiny_config()).state_dict())
    for key in ["time_embed.0.weight", "time_embed.2.weight", "input_blocks.1.0.in_layers.0.weight",
                "input_blocks.1.0.in_layers.2.weight", "input_blocks.1.0.emb_layers.1.weight",
                "input_blocks.1.0.out_layers.0.weight", "input_blocks.1.0.out_layers.3.weight",
                "input_blocks.1.1.transformer_blocks.0.ff.net.0.proj.weight",
                "input_blocks.1.1.transformer_blocks.0.ff.net.2.weight",
                "input_blocks.1.1.transformer_blocks.0.attn1.to_out.0.bias", "input_blocks.3.0.op.weight",
                "output_blocks.2.1.conv.weight", "out.0.weight", "out.2.weight", "middle_block.1.proj_out.weight"]:
        assert key in keys, key
    assert UNetModel(tiny_config()).state_dict()["input_blocks.1.1.proj_in.weight"].shape == (32, 32, 1, 1)


def test_timestep_embedding_matches_formula():
    t = torch.tensor([0.0, 17.25, 999.0])
    emb = timestep_embedding(t, 320)
    freqs = torch.exp(-math.log(10000) * torch.arange(160, dtype=torch.float64) / 160)
    args = t.double()[:, None] * freqs
    expected = torch.cat([torch.cos(args), torch.sin(args)], dim=1)  # cosine first
    assert emb.dtype == torch.float32 and emb.shape == (3, 320)
    assert (emb.double() - expected).abs().max().item() < 1e-4  # fp32 argument rounding at t = 999


def test_geglu_exact_gelu():
    geglu = reinit_(GEGLU(8, 16), seed=1)
    x = torch.randn(3, 5, 8, generator=torch.Generator().manual_seed(1))
    h = F.linear(x, geglu.proj.weight, geglu.proj.bias)
    expected = h[..., :16] * 0.5 * h[..., 16:] * (1 + torch.erf(h[..., 16:] / math.sqrt(2)))
    torch.testing.assert_close(geglu(x), expected, atol=1e-6, rtol=1e-5)


def test_cross_attention_matches_explicit_softmax():
    attn = reinit_(CrossAttention(64, 48, heads=8, dim_head=8)).eval()
    g = torch.Generator().manual_seed(2)
    x, ctx = torch.randn(2, 10, 64, generator=g), torch.randn(2, 7, 48, generator=g)
    q = (x @ attn.to_q.weight.T).view(2, 10, 8, 8).transpose(1, 2)
    k = (ctx @ attn.to_k.weight.T).view(2, 7, 8, 8).transpose(1, 2)
    v = (ctx @ attn.to_v.weight.T).view(2, 7, 8, 8).transpose(1, 2)
    p = torch.softmax(q @ k.transpose(-1, -2) * 8 ** -0.5, dim=-1)
    expected = attn.to_out[0]((p @ v).transpose(1, 2).reshape(2, 10, 64))
    torch.testing.assert_close(attn(x, ctx), expected, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("k,stride,padding,hw", [(3, 1, 1, (4, 5)), (3, 2, 1, (7, 6)), (1, 1, 0, (3, 3))])
def test_conv2d_gemm_path_matches_conv(k, stride, padding, hw):
    conv = reinit_(Conv2d(16, 24, k, stride=stride, padding=padding), seed=3)
    conv.gemm_min_weight, conv.gemm_max_pixels = 0, 10_000  # force the unfold + GEMM path
    x = torch.randn(2, 16, *hw, generator=torch.Generator().manual_seed(3))
    expected = F.conv2d(x, conv.weight, conv.bias, stride=stride, padding=padding)
    out = conv(x)
    assert out.shape == expected.shape and out.is_contiguous()
    torch.testing.assert_close(out, expected, atol=1e-5, rtol=1e-5)


def test_gemm_conv_path_in_the_whole_model(monkeypatch):
    """The tiny model's weights are below the GEMM threshold: force the path and compare with plain convs."""
    model = reinit_(UNetModel(tiny_config())).eval()
    x, t, context = _inputs(model.config)
    with torch.inference_mode():
        plain = model(x, t, context)
        monkeypatch.setattr(Conv2d, "gemm_min_weight", 0)
        monkeypatch.setattr(Conv2d, "gemm_max_pixels", 10_000)
        gemm = model(x, t, context)
    assert (gemm - plain).abs().max().item() <= 1e-5 * plain.abs().max().item()


def test_deterministic_and_does_not_mutate_inputs():
    model = reinit_(UNetModel(tiny_config(9, 1))).eval()
    x, t, context = _inputs(model.config)
    copies = [x.clone(), t.clone(), context.clone()]
    with torch.inference_mode():
        a, b = model(x, t, context), model(x, t, context)
    assert torch.equal(a, b) and a.shape == (2, 4, 16, 8)
    assert all(torch.equal(u, v) for u, v in zip(copies, [x, t, context]))


def test_backward_works():
    """The in-place adds only touch fresh outputs that autograd does not need."""
    model = reinit_(UNetModel(tiny_config(num_res_blocks=1)))
    x, t, context = _inputs(model.config, hw=(8, 8), tokens=5)
    x.requires_grad_(True)
    model(x, t, context).square().mean().backward()
    assert x.grad is not None and torch.isfinite(x.grad).all()
    assert model.input_blocks[1][1].transformer_blocks[0].attn1.to_q.weight.grad.abs().sum() > 0


def test_9_channel_model_accepts_the_concat():
    model = reinit_(UNetModel(tiny_config(9, 1)), seed=4).eval()  # reinit_: proj_out and out.2 are not zero
    g = torch.Generator().manual_seed(0)
    latent, masked, other_masked = (torch.randn(1, 4, 8, 8, generator=g) for _ in range(3))
    mask, other_mask = (torch.rand(1, 1, 8, 8, generator=g) for _ in range(2))
    context, t = torch.randn(1, 77, 64, generator=g), torch.tensor([500.0])

    def eps(m, mi):
        with torch.inference_mode():
            return model(torch.cat([latent, m, mi], dim=1), t, context)

    base = eps(mask, masked)
    assert base.shape == (1, 4, 8, 8) and torch.isfinite(base).all()
    assert torch.equal(eps(mask, masked), base)
    # the mask channel and the masked-image channels both reach eps (measured changes 0.43 and 1.1 of max |eps|)
    scale = base.abs().max().item()
    assert (eps(other_mask, masked) - base).abs().max().item() > 1e-2 * scale
    assert (eps(mask, other_masked) - base).abs().max().item() > 1e-2 * scale
    # ...through input channel 4 (mask) and 5:9 (masked image) of the first conv, in that order
    with torch.no_grad():
        model.input_blocks[0][0].weight[:, 4].zero_()
    base = eps(mask, masked)
    assert torch.equal(eps(other_mask, masked), base)
    assert not torch.equal(eps(mask, other_masked), base)
    with torch.no_grad():
        model.input_blocks[0][0].weight[:, 5:].zero_()
    assert torch.equal(eps(mask, other_masked), eps(mask, masked))


def test_bad_context_and_channels_and_timesteps():
    model = UNetModel(tiny_config())
    x, t, context = _inputs(model.config, hw=(8, 8))
    with pytest.raises(ValueError, match=r"context must be \[B=2,L,64\], got \[2, 77, 768\]"):
        model(x, t, torch.randn(2, 77, 768))
    with pytest.raises(ValueError, match=r"context must be"):
        model(x, t, torch.randn(1, 77, 64))
    with pytest.raises(ValueError, match=r"input must be \[B,4,H,W\], got \[2, 9, 8, 8\]"):
        model(torch.randn(2, 9, 8, 8), t, context)
    with pytest.raises(ValueError, match=r"timesteps must be a scalar or \[B=2\], got \[3\]"):
        model(x, torch.tensor([1.0, 2.0, 3.0]), context)


def test_triton_kernels_match_torch_kernels():
    """The same weights with kernels="triton" (GroupNorm+SiLU and attention kernels) and kernels="torch".

    On CPU this runs under Triton's interpreter (slow: about 0.25 s per GroupNorm call), so the model is minimal.
    Measured max|diff| / max|eps| 1.2e-6 under the interpreter.
    """
    from inpaintlab.kernels import interpreting

    device = "cuda" if torch.cuda.is_available() else "cpu"
    if device == "cpu" and not interpreting():
        pytest.skip("no CUDA and TRITON_INTERPRET is not 1")
    pytest.importorskip("triton")
    cfg = UNetConfig(in_channels=9, model_channels=32, channel_mult=(1, 2), num_res_blocks=1,
                     attention_resolutions=(1,), context_dim=64)
    ours = reinit_(UNetModel(cfg, kernels="torch")).eval().to(device)
    triton_model = UNetModel(cfg, kernels="triton").eval().to(device)
    triton_model.load_state_dict(ours.state_dict(), strict=True)
    g = torch.Generator().manual_seed(0)
    x, context = torch.randn(1, 9, 4, 6, generator=g), torch.randn(1, 7, 64, generator=g)
    x, context, t = x.to(device), context.to(device), torch.tensor([321.5], device=device)
    with torch.inference_mode():
        expected, got = ours(x, t, context), triton_model(x, t, context)
    assert (got - expected).abs().max().item() <= 1e-5 * expected.abs().max().item()
