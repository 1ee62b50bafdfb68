"""CFG Rescale φ on x0 predictions, as A1111 extensions apply it (Lin et al. 2023, Alg. 2, moved to x0).

`cfg_rescale` is the CFG_Rescale_webui extension (key `CFG Rescale`; `CFG Rescale φ` and `CFG Rescale phi` are the
spellings older builds and neutral-prompt wrote, read as aliases): per image and sub-prompt,
``x_cfg = u + (c − u)·(cfg·w)`` then ``x_cfg·(φ·std(c)/std(x_cfg) + 1 − φ)`` with the unbiased std over C×H×W;
the result *replaces* the image's output, so with ``AND`` sub-prompts the last one wins, as there.
`cfg_rescale_mean` is neutral-prompt's variant, which also restores the mean.
"""
from __future__ import annotations

from typing import Sequence

import torch

INFOTEXT_KEY = "CFG Rescale"
INFOTEXT_ALIASES = ("CFG Rescale φ", "CFG Rescale phi")  # read by rows.read_cfg_rescale_spellings


def cfg_rescale(cond: torch.Tensor, uncond: torch.Tensor, cfg_scale: float, phi: float,
                weights: Sequence[float] = (1.0,)) -> torch.Tensor:
    """``uncond`` [B, C, H, W], ``cond`` [B·n, C, H, W] image-major (n = len(weights)). φ = 0 is A1111's CFG."""
    n = len(weights)
    if cond.shape[0] != uncond.shape[0] * n:
        raise ValueError(f"cond batch {cond.shape[0]} does not hold {n} sub-prompts for {uncond.shape[0]} images")
    denoised = uncond.clone()
    for i in range(uncond.shape[0]):
        for j, weight in enumerate(weights):
            c = cond[i * n + j]
            if phi == 0:
                denoised[i] += (c - uncond[i]) * (weight * cfg_scale)
            else:
                xcfg = uncond[i] + (c - uncond[i]) * (cfg_scale * weight)
                factor = phi * (torch.std(c) / torch.std(xcfg)) + (1.0 - phi)
                denoised[i] = factor * xcfg
    return denoised


def cfg_rescale_mean(x_cfg: torch.Tensor, cond: torch.Tensor, phi: float) -> torch.Tensor:
    """neutral-prompt's rescale of a CFG result ``x_cfg`` towards ``cond`` (both [B, C, H, W], per image): std and
    mean both move by φ."""
    dims = tuple(range(1, x_cfg.ndim))
    mean_cfg, mean_c = x_cfg.mean(dims, keepdim=True), cond.mean(dims, keepdim=True)
    std_cfg, std_c = x_cfg.std(dims, keepdim=True), cond.std(dims, keepdim=True)
    mean = (1 - phi) * mean_cfg + phi * mean_c
    return mean + (x_cfg - mean_cfg) * (phi * (std_c / std_cfg - 1) + 1)
