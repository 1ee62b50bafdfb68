"""PAG (incantations semantics) and SEG against float64 re-derivations and diffusers' PAG attention processor."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from guidance_helpers import randn, tiny_unet, unet_inputs

from inpaintlab.guidance.pag import (PerturbedAttention, SmoothedEnergy, pag_combine, pag_module, sanf_blur,
                                     seg_blur, seg_kernel_size)
from inpaintlab.unet.attention import CrossAttention


def test_pag_combine_matches_float64_and_scale_zero_is_cfg():
    uncond, cond, ptb = randn(2, 4, 6, 6, seed=1), randn(4, 4, 6, 6, seed=2), randn(2, 4, 6, 6, seed=3)
    w = [0.9, 0.6]
    got = pag_combine(cond, uncond, ptb, 7.0, 3.0, weights=w)
    u, c, p = (t.double().numpy() for t in (uncond, cond, ptb))
    ref = u.copy()
    for i in range(2):
        for j in range(2):
            ref[i] += (c[2 * i + j] - u[i]) * w[j] * 7.0 + (c[2 * i + j] - p[i]) * w[j] * 3.0
    assert np.abs(got.numpy() - ref).max() < 1e-5
    plain = uncond.clone()
    for i in range(2):
        for j in range(2):
            plain[i] += (cond[2 * i + j] - uncond[i]) * (w[j] * 7.0)
    assert torch.equal(pag_combine(cond, uncond, ptb, 7.0, 0.0, weights=w), plain)
    assert torch.equal(pag_combine(cond, uncond, ptb, 7.0, 3.0, weights=w, run_pag=False), plain)


def _blur3_f64(a: np.ndarray) -> np.ndarray:
    k = np.exp(-0.5 * np.array([-1.0, 0.0, 1.0]) ** 2)
    k /= k.sum()
    p = np.pad(a, ((0, 0), (1, 1), (1, 1)), mode="reflect")
    out = np.zeros_like(a)
    for dy in range(3):
        for dx in range(3):
            out += k[dy] * k[dx] * p[:, dy:dy + a.shape[1], dx:dx + a.shape[2]]
    return out


def test_sanf_picks_per_element_by_channel_softmax():
    x = randn(4, 7, 5, seed=4)
    assert np.abs(sanf_blur(x).numpy() - _blur3_f64(x.double().numpy())).max() < 1e-6
    uncond, cond, ptb = randn(1, 4, 7, 5, seed=5), randn(1, 4, 7, 5, seed=6), randn(1, 4, 7, 5, seed=7)
    got = pag_combine(cond, uncond, ptb, 5.0, 2.0, sanf=True)
    cfg_x = ((cond - uncond) * 5.0)[0].double().numpy()
    pag_x = ((cond - ptb) * 2.0)[0].double().numpy()

    def softmax(a):
        e = np.exp(a - a.max(0, keepdims=True))
        return e / e.sum(0, keepdims=True)
    pick = softmax(_blur3_f64(np.abs(cfg_x))) >= softmax(_blur3_f64(np.abs(pag_x)))
    ref = uncond[0].double().numpy() + np.where(pick, cfg_x, pag_x)
    assert 0 < pick.mean() < 1
    assert np.abs(got[0].numpy() - ref).max() < 1e-5


@torch.no_grad()
def test_perturbed_attention_is_to_v_without_to_out_and_diffusers_adds_to_out():
    unet = tiny_unet()
    attn = pag_module(unet)
    x = randn(2, 12, attn.to_q.in_features, seed=8)
    with PerturbedAttention(unet):
        out = attn(x)
    assert torch.equal(out, attn.to_v(x))
    assert not torch.allclose(out, attn.to_out(attn.to_v(x)))
    assert not torch.equal(attn(x), out)  # hook removed
    attention_processor = pytest.importorskip("diffusers.models.attention_processor")
    d = attention_processor.Attention(attn.to_q.in_features, heads=attn.heads, dim_head=attn.dim_head, bias=False,
                                      out_bias=True, processor=attention_processor.PAGIdentitySelfAttnProcessor2_0())
    d.load_state_dict({k: v for k, v in attn.state_dict().items()})
    ref = d(torch.cat([x, x]))  # diffusers' PAG batch [cond, cond_ptb]: the second half is perturbed
    assert torch.allclose(ref[2:], attn.to_out(out), atol=1e-5)


@torch.no_grad()
def test_pag_extra_pass_changes_only_the_middle_attention():
    unet = tiny_unet()
    x, t, ctx = unet_inputs()
    plain = unet(x, t, ctx)
    with PerturbedAttention(unet):
        ptb = unet(x, t, ctx)
    assert (ptb - plain).abs().max() > 1e-3 and torch.equal(unet(x, t, ctx), plain)


def _seg_ref(q: np.ndarray, sigma_exp: float, gh: int, gw: int) -> np.ndarray:
    b, L, d = q.shape
    out = q.copy()
    half = q[b // 2:].transpose(0, 2, 1).reshape(b // 2, d, gh, gw)
    s = 2 ** sigma_exp
    if sigma_exp > 10.5:
        res = np.broadcast_to(half.mean(axis=(2, 3), keepdims=True), half.shape)
    else:
        k = min(seg_kernel_size(s), gw + 1 if gw % 2 == 0 else gw)
        xs = np.linspace(-(k - 1) / 2, (k - 1) / 2, k)
        k1 = np.exp(-0.5 * (xs / s) ** 2)
        k1 /= k1.sum()
        p = np.pad(half, ((0, 0), (0, 0), (k // 2, k // 2), (k // 2, k // 2)), mode="reflect")
        res = np.zeros_like(half)
        for dy in range(k):
            for dx in range(k):
                res += k1[dy] * k1[dx] * p[:, :, dy:dy + gh, dx:dx + gw]
    out[b // 2:] = res.reshape(b // 2, d, L).transpose(0, 2, 1)
    return out


@pytest.mark.parametrize("sigma_exp", [0.0, 1.0, 11.0])
def test_seg_blur_matches_float64_and_keeps_the_cond_half(sigma_exp):
    q = randn(4, 6 * 4, 8, seed=9)  # grid 6x4 for a 48x32 latent
    got = seg_blur(q, sigma_exp, 48, 32)
    assert torch.equal(got[:2], q[:2])
    assert np.abs(got.numpy() - _seg_ref(q.double().numpy(), sigma_exp, 6, 4)).max() < 1e-5
    if sigma_exp > 10.5:
        assert torch.allclose(got[2:], q[2:].mean(1, keepdim=True).expand_as(q[2:]), atol=1e-6)
    assert seg_kernel_size(2 ** 1) == 13 and seg_kernel_size(1.0) == 7


def test_seg_grid_that_does_not_factor_is_a_clear_error():
    with pytest.raises(ValueError, match="SEG cannot lay"):
        seg_blur(randn(2, 13 * 8 - 1, 4), 1.0, 776, 512)


@torch.no_grad()
def test_seg_hook_blurs_only_the_uncond_rows_and_sigma_zero_is_neutral():
    unet = tiny_unet()
    x, t, ctx = unet_inputs(b=4, hw=(16, 12))
    plain = unet(x, t, ctx)
    with SmoothedEnergy(unet, 0.0, 16, 12):
        assert torch.equal(unet(x, t, ctx), plain)
    with SmoothedEnergy(unet, 11.0, 16, 12):
        seg = unet(x, t, ctx)
    assert torch.equal(seg[:2], plain[:2]) and (seg[2:] - plain[2:]).abs().max() > 1e-3
    assert math.isfinite(float(seg.abs().max()))


def test_cross_attention_class_unchanged():
    assert CrossAttention.forward.__qualname__ == "CrossAttention.forward"
