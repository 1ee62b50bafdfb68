"""inpaintlab: Stable Diffusion 1.x inpainting from scratch, as AUTOMATIC1111 v1.10 does it.

    pipe = inpaintlab.load("model.safetensors")
    result = pipe.inpaint(image, mask, "prompt", masked_content="fill")

The pipeline (and torch) is imported on first use of `load`, `Pipeline`, `Result` or `Technique`: `import inpaintlab`,
the settings registry, `inpaintlab info` and `inpaintlab --version` need no torch.
"""
from ._lazy import lazy_package
from ._version import __version__
from .errors import (CheckpointError, FileError, InfotextError, InpaintlabError, MissingFileError, SettingsError,
                     WriteError)
# The whole registry first (settings imports every rows module, in order), so that a rows module imported on its own
# cannot be half-imported when the registry loads it, which would change the rows' order.
from . import settings  # noqa: F401

lazy_package(__name__, {"Pipeline": ".pipeline", "Result": ".pipeline", "Technique": ".pipeline", "load": ".pipeline"})

__all__ = ["CheckpointError", "FileError", "InfotextError", "InpaintlabError", "MissingFileError", "Pipeline", "Result",
           "SettingsError", "Technique", "WriteError", "__version__", "load"]
