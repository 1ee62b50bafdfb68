"""Cheap latent → RGB previews (A1111's "Approx cheap" live preview): a fixed 4×3 linear map, no VAE."""
from __future__ import annotations

import numpy as np
import torch
from PIL import Image

# Rows: latent channels 0–3; columns: R, G, B. The SD1 coefficients A1111 uses for its cheap preview.
SD1_LATENT_RGB = torch.tensor([
    [0.298, 0.207, 0.208],
    [0.187, 0.286, 0.173],
    [-0.158, 0.189, 0.264],
    [-0.184, -0.271, -0.473],
])


def latent_preview(latent: torch.Tensor) -> Image.Image:
    """[4,h,w] (or [1,4,h,w]) scaled latent → an h×w RGB image, mapped from about [-1,1] to [0,255]."""
    if latent.dim() == 4:
        latent = latent[0]
    rgb = torch.einsum("chw,cr->rhw", latent.detach().float().cpu(), SD1_LATENT_RGB)
    rgb = torch.clamp((rgb + 1.0) / 2.0, 0.0, 1.0)
    return Image.fromarray((255.0 * rgb.permute(1, 2, 0).numpy()).astype(np.uint8))
