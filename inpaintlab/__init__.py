"""inpaintlab: Stable Diffusion 1.x inpainting from scratch, as AUTOMATIC1111 v1.10 does it.

    pipe = inpaintlab.load("model.safetensors")
    result = pipe.inpaint(image, mask, "prompt", masked_content="fill")
"""
from ._version import __version__
from .pipeline import Pipeline, Result, Technique, load

__all__ = ["Pipeline", "Result", "Technique", "__version__", "load"]
