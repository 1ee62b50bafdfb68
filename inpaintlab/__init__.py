"""inpaintlab: Stable Diffusion 1.x inpainting from scratch, as AUTOMATIC1111 v1.10 does it.

    pipe = inpaintlab.load("model.safetensors")
    result = pipe.inpaint(image, mask, "prompt", masked_content="fill")
"""
from ._version import __version__
from .errors import (CheckpointError, FileError, InfotextError, InpaintlabError, MissingFileError, SettingsError,
                     WriteError)


def __getattr__(name: str):
    # The pipeline (and torch) is imported on first use, so `inpaintlab info` and `--version` start at once.
    if name in ("Pipeline", "Result", "load"):
        from . import inpaint

        return getattr(inpaint, name)
    raise AttributeError(f"module 'inpaintlab' has no attribute {name!r}")


__all__ = ["CheckpointError", "FileError", "InfotextError", "InpaintlabError", "MissingFileError", "Pipeline", "Result",
           "SettingsError", "WriteError", "__version__", "load"]
