"""The one exception type of the upscaler package."""
from __future__ import annotations

from ..errors import InpaintlabError


class UpscalerError(InpaintlabError):
    """An upscaler file, name or argument that cannot be used; the message (one line) names the problem."""
