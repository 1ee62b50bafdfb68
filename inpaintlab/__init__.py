"""inpaintlab: Stable Diffusion 1.x inpainting from scratch, as AUTOMATIC1111 v1.10 does it.

    pipe = inpaintlab.load("model.safetensors")
    result = pipe.inpaint(image, mask, "prompt", masked_content="fill")
"""
from .inpaint import Pipeline, Result, load

__version__ = "0.1.0"
__all__ = ["Pipeline", "Result", "load"]
