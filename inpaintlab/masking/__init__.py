"""Mask handling for A1111-style inpainting (see spec/a1111-inpaint.md steps 2-11, 16, 18).

Inside the library masks are float in [0, 1], 1 = repaint. At the edge (PIL images) masks are 8-bit "L", 255 = repaint.
"""
from .blend import blend_latents

__all__ = ["blend_latents"]
