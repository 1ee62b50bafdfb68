"""Blending generated content with the original: latent blend (steps 15/16) and pixel overlay (steps 7.4/18).

Masks here follow the library convention: float in [0, 1], 1 = repaint.
"""
from __future__ import annotations

import torch


def blend_latents(denoised: torch.Tensor, init_latent: torch.Tensor, latent_mask: torch.Tensor) -> torch.Tensor:
    """Keep the original latent where the mask is 0 and the denoised one where it is 1.

    ``latent_mask`` is A1111's ``nmask`` (1 = repaint), broadcastable to the latents. The expression is written as
    ``denoised * nmask + init_latent * (1 - nmask)``: A1111 computes ``denoised * nmask + init_latent * mask`` with
    ``mask = 1 - nmask`` precomputed, so the same products and the same sum order give the same float result.
    """
    return denoised * latent_mask + init_latent * (1 - latent_mask)
