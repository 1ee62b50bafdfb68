"""CFG-level techniques: CFG rescale (float64, diffusers' rescale_noise_cfg), NGMS / Skip Early CFG rules, pad conds."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from guidance_helpers import randn

from inpaintlab.guidance.cfg_rescale import cfg_rescale, cfg_rescale_mean
from inpaintlab.guidance.cfg_rules import combine_cond_only, pad_conds, uncond_skip
from inpaintlab.samplers.denoisers import CFGDenoiser


def _plain_cfg(cond, uncond, scale, weights=None):
    """A1111's combine as CFGDenoiser computes it, through an identity inner model."""
    b = uncond.shape[0]
    n = 1 if weights is None else len(weights)
    x_out = torch.cat([cond, uncond])
    inner = lambda x, s, cond=None, **k: x_out  # noqa: E731
    cfg = CFGDenoiser(inner, torch.zeros(b * n, 1, 4), torch.zeros(b, 1, 4), scale, cond_weights=weights)
    return cfg(torch.zeros(b, *uncond.shape[1:]), torch.ones(b))


def test_cfg_rescale_matches_float64_and_phi_zero_is_cfg():
    uncond, cond = randn(2, 4, 6, 6, seed=1), randn(2, 4, 6, 6, seed=2)
    got = cfg_rescale(cond, uncond, 7.5, 0.7)
    u, c = uncond.double().numpy(), cond.double().numpy()
    x = u + (c - u) * 7.5
    std = lambda a: a.reshape(a.shape[0], -1).std(1, ddof=1)[:, None, None, None]  # noqa: E731
    ref = x * (0.7 * std(c) / std(x) + 0.3)
    assert np.abs(got.numpy() - ref).max() < 1e-5 * np.abs(ref).max()
    assert torch.equal(cfg_rescale(cond, uncond, 7.5, 0.0), _plain_cfg(cond, uncond, 7.5))
    one = cfg_rescale(cond, uncond, 7.5, 1.0)
    assert torch.allclose(one.flatten(1).std(1), cond.flatten(1).std(1), rtol=1e-5)


def test_cfg_rescale_last_sub_prompt_wins():
    uncond, cond = randn(1, 4, 5, 5, seed=3), randn(2, 4, 5, 5, seed=4)
    both = cfg_rescale(cond, uncond, 6.0, 0.5, weights=[0.8, 0.4])
    last = cfg_rescale(cond[1:], uncond, 6.0 * 0.4 / 0.4, 0.5, weights=[0.4])
    assert torch.equal(both, last)


def test_cfg_rescale_agrees_with_diffusers_on_the_same_tensors():
    pipe_utils = pytest.importorskip("diffusers.guiders.guider_utils")
    uncond, cond = randn(2, 4, 6, 6, seed=5), randn(2, 4, 6, 6, seed=6)
    x_cfg = uncond + (cond - uncond) * 5.0
    ref = pipe_utils.rescale_noise_cfg(x_cfg, cond, guidance_rescale=0.6)
    assert torch.allclose(cfg_rescale(cond, uncond, 5.0, 0.6), ref, atol=1e-5)
    # neutral-prompt's variant also moves the mean: equal to diffusers only when the means already agree.
    mean_moved = cfg_rescale_mean(x_cfg, cond, 0.6)
    ref_mean = (0.4 * x_cfg.mean((1, 2, 3), keepdim=True) + 0.6 * cond.mean((1, 2, 3), keepdim=True))
    assert torch.allclose(mean_moved.mean((1, 2, 3), keepdim=True), ref_mean, atol=1e-5)
    assert torch.allclose(mean_moved.std((1, 2, 3)), ref.std((1, 2, 3)), rtol=1e-4)


def test_uncond_skip_rules():
    # Skip Early CFG: call/total <= v, so the first call always; checked before NGMS.
    assert uncond_skip(0, 20, 14.0, skip_early_cond=0.01) == {"Skip Early CFG": 0.01}
    assert uncond_skip(2, 20, 14.0, skip_early_cond=0.1) == {"Skip Early CFG": 0.1}
    assert uncond_skip(3, 20, 14.0, skip_early_cond=0.1) is None
    # NGMS: odd calls only, sigma strictly below; "all steps" also even calls and its own key.
    assert uncond_skip(3, 20, 0.5, s_min_uncond=1.0) == {"NGMS": 1.0}
    assert uncond_skip(4, 20, 0.5, s_min_uncond=1.0) is None
    assert uncond_skip(3, 20, 1.0, s_min_uncond=1.0) is None
    assert uncond_skip(4, 20, 0.5, s_min_uncond=1.0, s_min_uncond_all=True) == {"NGMS": 1.0, "NGMS all steps": True}
    assert uncond_skip(1, 20, 0.5) is None


def test_cond_only_output_and_neutral_ngms():
    cond = randn(4, 4, 5, 5, seed=7)
    assert torch.equal(combine_cond_only(cond[:2]), cond[:2])  # one prompt: the cond output itself
    got = combine_cond_only(cond, weights=[0.5, 0.8])
    ref = cond[::2] + (cond[1::2] - cond[::2]) * 0.8
    assert torch.allclose(got, ref, atol=1e-6)


def test_pad_conds_v1_and_v0():
    empty = randn(1, 77, 8, seed=8)
    c, u = randn(2, 154, 8, seed=9), randn(2, 77, 8, seed=10)
    pc, pu = pad_conds(c, u, empty)
    assert pc is c and torch.equal(pu, torch.cat([u, empty.expand(2, -1, -1)], 1))
    pc, pu = pad_conds(u, c, empty)
    assert torch.equal(pc, torch.cat([u, empty.expand(2, -1, -1)], 1)) and pu is c
    pc, pu = pad_conds(c, u, v0=True)
    assert torch.equal(pu, torch.cat([u, u[:, -1:].expand(-1, 77, -1)], 1))
    pc, pu = pad_conds(u, c, v0=True)
    assert pc is u and torch.equal(pu, c[:, :77])
    assert pad_conds(u, u * 2, empty)[1].shape == u.shape
    with pytest.raises(ValueError, match="empty prompt"):
        pad_conds(c, u)
