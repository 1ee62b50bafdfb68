"""The settings rows of A1111's img2img noise multiplier (`initial_noise_multiplier`, techniques/noise_multiplier.py)
and extra noise (`img2img_extra_noise`, techniques/extra_noise.py): keywords through ``**settings``, CLI flags,
infotext keys and sweep axes. No torch, numpy or PIL at import (`inpaintlab.settings` loads it, `ROWS_MODULES`).
"""
from __future__ import annotations

from ..settings import ALL, IMAGE, Setting, register


def _range(v: float) -> str | None:
    return None if 0.0 <= v <= 1.5 else f"must be in [0, 1.5] (A1111's slider), got {v}"


NOISE_MULTIPLIER = Setting("initial_noise_multiplier", float, 1.0,
                           "img2img/inpaint: multiply the initial noise by this (A1111's 'Noise multiplier for img2img')",
                           IMAGE, infotext="Noise multiplier", check=_range, example=0.85, keyword=False)

# --- extra noise (techniques/extra_noise.py) ------------------------------------------------------------------------

EXTRA_NOISE = Setting("img2img_extra_noise", float, 0.0,
                      "img2img, inpaint and the hires pass: add the initial noise once more, times this (A1111's "
                      "'Extra noise multiplier for img2img and hires fix')", ALL, infotext="Extra noise",
                      check=lambda v: None if 0.0 <= v <= 1.0 else f"must be in [0, 1], got {v}", example=0.2,
                      keyword=False)


for _row in (NOISE_MULTIPLIER, EXTRA_NOISE):
    register(_row)
