"""inpaintlab: Stable Diffusion 1.x inpainting from scratch, as AUTOMATIC1111 v1.10 does it."""
__version__ = "0.1.0"
