"""A1111's own CFG-level options: NGMS ("Negative Guidance minimum sigma"), Skip Early CFG and pad conds.

Per denoiser call A1111 v1.10 (`CFGDenoiser.forward`) may skip the unconditional half of the batch:

* Skip Early CFG (`skip_early_cond` v > 0): every call with ``call / total_calls <= v`` (so always the first);
* else NGMS (`s_min_uncond` s > 0): odd calls (every call with "all steps") whose ``sigma[0] < s``.

A skipped call runs the cond rows only and returns, per image, ``first_cond + Σ_j w_j·(cond_j − first_cond)`` (CFG
scale 1 with the image's first sub-prompt as the fake uncond): the plain cond output for one prompt. The infotext
keys are written only when a skip actually happened.
"""
from __future__ import annotations

from typing import Sequence

import torch

SKIP_EARLY_KEY, NGMS_KEY, NGMS_ALL_KEY = "Skip Early CFG", "NGMS", "NGMS all steps"


def uncond_skip(call: int, total_calls: int, sigma: float, *, s_min_uncond: float = 0.0,
                s_min_uncond_all: bool = False, skip_early_cond: float = 0.0) -> dict[str, object] | None:
    """The infotext entries of a skip at this call, or None when the call runs CFG. ``total_calls`` is A1111's
    ``total_steps`` (steps, or 2·steps − 1 for second-order samplers; img2img: of ``t_enc + 1`` steps)."""
    if skip_early_cond != 0 and call / total_calls <= skip_early_cond:
        return {SKIP_EARLY_KEY: skip_early_cond}
    if (call % 2 == 1 or s_min_uncond_all) and s_min_uncond > 0 and sigma < s_min_uncond:
        out: dict[str, object] = {NGMS_KEY: s_min_uncond}
        if s_min_uncond_all:
            out[NGMS_ALL_KEY] = True
        return out
    return None


def combine_cond_only(cond: torch.Tensor, weights: Sequence[float] = (1.0,)) -> torch.Tensor:
    """A skipped call's output from the cond rows [B·n, C, H, W] (image-major, n = len(weights))."""
    n = len(weights)
    if cond.shape[0] % n:
        raise ValueError(f"cond batch {cond.shape[0]} is not a multiple of the {n} sub-prompt weights")
    first = cond[::n]
    denoised = first.clone()
    for i in range(first.shape[0]):
        for j, weight in enumerate(weights):
            denoised[i] += (cond[i * n + j] - first[i]) * (weight * 1.0)
    return denoised


def pad_conds(cond: torch.Tensor, uncond: torch.Tensor, empty: torch.Tensor | None = None,
              v0: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
    """A1111's `pad_cond_uncond` (v1, ``empty`` = the encoding of "" [1, 77, D]) or `pad_cond_uncond_v0` for cond and
    uncond [B, L, D] of different token lengths, so they run in one UNet batch. Same lengths: unchanged.

    v1 appends whole copies of ``empty`` to the shorter side; v0 pads the uncond with copies of its last token vector
    or truncates it to the cond's length.
    """
    lc, lu = cond.shape[1], uncond.shape[1]
    if lc == lu:
        return cond, uncond
    if v0:
        if lu < lc:
            return cond, torch.cat([uncond, uncond[:, -1:].expand(-1, lc - lu, -1)], dim=1)
        return cond, uncond[:, :lc]
    if empty is None:
        raise ValueError("pad conds (v1) needs the encoding of the empty prompt")
    if empty.ndim != 3 or empty.shape[0] != 1 or empty.shape[2] != cond.shape[2]:
        raise ValueError(f"empty prompt encoding must be [1, L, {cond.shape[2]}], got {tuple(empty.shape)}")
    r = (lc - lu) // empty.shape[1]
    if r < 0:
        cond = torch.cat([cond, empty.to(cond).repeat(cond.shape[0], -r, 1)], dim=1)
    elif r > 0:
        uncond = torch.cat([uncond, empty.to(uncond).repeat(uncond.shape[0], r, 1)], dim=1)
    return cond, uncond
