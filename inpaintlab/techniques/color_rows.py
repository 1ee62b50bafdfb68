"""The settings row of A1111's img2img colour correction (`img2img_color_correction`): a keyword of img2img / inpaint
through ``**settings``, a CLI flag (``--color-correction``) and a sweep axis. A1111 writes no infotext key for it, so
``--from-png`` cannot bring it back; give it again when replaying."""
from __future__ import annotations

from ..settings import IMAGE, SETTINGS, Setting, register

COLOR_CORRECTION = Setting(
    "color_correction", bool, False,
    "img2img/inpaint: match the result's colours to the init image's (A1111's 'Apply color correction to img2img "
    "results to match original colors.'; not written to the infotext)", IMAGE, keyword=False)
if COLOR_CORRECTION.name not in SETTINGS:
    register(COLOR_CORRECTION)
