"""Token merging against tomesd 0.1.3 (the reference package A1111 calls) with A1111's arguments."""
from __future__ import annotations

import pytest
import torch
from guidance_helpers import randn, tiny_unet, unet_inputs

from inpaintlab.guidance.tome import TokenMerging, bipartite_merge, token_merging_ratio

tomesd = pytest.importorskip("tomesd")
from tomesd.merge import bipartite_soft_matching_random2d  # noqa: E402


@pytest.mark.parametrize("hw,r", [((6, 8), 10), ((5, 7), 12), ((4, 4), 100), ((6, 8), 0)])
def test_merge_unmerge_match_tomesd(hw, r):
    # Odd sizes exercise the partial 2x2 cells (their tokens are all sources); r = 100 is clamped to the sources.
    h, w = hw
    metric = randn(2, h * w, 16, seed=3)
    x = randn(2, h * w, 8, seed=4)
    ours_m, ours_u = bipartite_merge(metric, h, w, r)
    ref_m, ref_u = bipartite_soft_matching_random2d(metric, w, h, 2, 2, r, no_rand=True)
    merged, ref_merged = ours_m(x), ref_m(x)
    assert merged.shape == ref_merged.shape
    # Attention is permutation-equivariant, so compare as sets of rows: sort both by their first channel.
    key = lambda t: t[0, t[0, :, 0].argsort()]  # noqa: E731
    assert torch.equal(key(merged), key(ref_merged))
    y = randn(*merged.shape, seed=5)
    # unmerge needs rows in each implementation's own order: build y for tomesd by matching merged rows
    perm = torch.stack([torch.cdist(merged[i], ref_merged[i]).argmin(0) for i in range(2)])
    y_ref = torch.stack([y[i, perm[i]] for i in range(2)])
    assert torch.equal(ours_u(y), ref_u(y_ref))


def _patch_with_tomesd(unet, ratio):
    """tomesd.apply_patch on our UNet: it wants `.model.diffusion_model` and ldm's `_forward` entry point."""
    holder = torch.nn.Module()
    holder.model = torch.nn.Module()
    holder.model.diffusion_model = unet
    tomesd.apply_patch(holder, ratio=ratio, max_downsample=1, sx=2, sy=2, use_rand=False, merge_attn=True,
                       merge_crossattn=False, merge_mlp=False)
    for m in unet.modules():
        if hasattr(m, "_tome_info") and m is not unet:
            m.disable_self_attn = False
            m.forward = m._forward
    return holder


@torch.no_grad()
def test_unet_with_token_merging_matches_tomesd():
    unet = tiny_unet()
    x, t, ctx = unet_inputs(b=2, hw=(12, 8))
    plain = unet(x, t, ctx)
    with TokenMerging(unet, 0.5):
        ours = unet(x, t, ctx)
    assert torch.equal(unet(x, t, ctx), plain)  # removed cleanly
    holder = _patch_with_tomesd(unet, 0.5)
    ref = unet(x, t, ctx)
    tomesd.remove_patch(holder)
    err = (ours - ref).abs().max().item()
    assert err < 1e-4 * ref.abs().max().item(), err  # same maths; merged rows in another order (fp32 rounding)
    assert (ours - plain).abs().max() > 1e-2  # merging really changed the output


@torch.no_grad()
def test_ratio_zero_is_the_plain_unet_bit_for_bit():
    unet = tiny_unet()
    x, t, ctx = unet_inputs()
    plain = unet(x, t, ctx)
    with TokenMerging(unet, 0.0):
        assert torch.equal(unet(x, t, ctx), plain)


def test_only_full_resolution_blocks_merge():
    unet = tiny_unet()
    seen = []
    import inpaintlab.guidance.tome as tome

    real = tome.bipartite_merge

    def spy(metric, h, w, r):
        seen.append((metric.shape[1], h, w))
        return real(metric, h, w, r)

    x, t, ctx = unet_inputs(b=1, hw=(8, 8))
    tome.bipartite_merge = spy
    try:
        with torch.no_grad(), TokenMerging(unet, 0.3):
            unet(x, t, ctx)
    finally:
        tome.bipartite_merge = real
    # input block 1 and output blocks 3, 4 (the full-resolution level of this 3-level model)
    assert seen == [(64, 8, 8)] * 3


def test_ratio_selection_and_errors():
    assert token_merging_ratio("txt2img", 0.3, 0.5) == 0.3
    assert token_merging_ratio("img2img", 0.3, 0.5) == 0.5
    assert token_merging_ratio("inpaint", 0.3, 0.5, ratio_overridden=True) == 0.3
    assert token_merging_ratio("inpaint", 0.3, 0.0) == 0.3
    assert token_merging_ratio("txt2img", 0.3, 0.5, 0.0, hires=True) == 0.3
    assert token_merging_ratio("txt2img", 0.3, 0.5, 0.7, hires=True) == 0.7
    with pytest.raises(ValueError, match="ratio"):
        TokenMerging(tiny_unet(), 1.0)
