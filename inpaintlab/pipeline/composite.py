"""Stage 9, composite: A1111's overlay of the original over the generated images (`postprocess_maskoverlay`).

The blend techniques call `overlay_composite` from their `composite` hook (soft inpainting builds its own overlays).
"""
from __future__ import annotations

from .. import masking
from ..result import Result
from .job import Job


def overlay_composite(job: Job, result: Result) -> Result:
    """The original (outside the blurred mask) over each generated image, pasted back into the full picture in
    only-masked mode; nothing without a mask."""
    prep = job.prep
    if prep is not None and prep.overlay is not None:
        result.images = [masking.apply_overlay(img, prep.overlay, prep.paste_to) for img in result.images]
        result.overlay_masks = [prep.overlay_mask] * len(result.images)
    return result
