"""The settings rows of A1111's txt2img hires fix (techniques/hires.py): `enable_hr` and the `hr_*` API fields,
`upscaler_dir`; keywords of `txt2img` through ``**settings``, CLI flags, infotext keys and sweep axes. No torch, numpy
or PIL at import (`inpaintlab.settings` loads it, `ROWS_MODULES`).
"""
from __future__ import annotations

from ..settings import Setting, register, register_infotext_key

_TXT2IMG = ("txt2img",)


def _hr_upscaler(v: str) -> str | None:
    return None if v else "must name an upscaler (a latent mode, None, Lanczos, Nearest, a file or an A1111 name)"


def _resize_part(index: int):
    def parse(text: str) -> int:
        return int(text.lower().split("x")[index])
    return parse


HIRES_ROWS = (
    Setting("enable_hr", bool, False, "txt2img: A1111's hires fix (a second, img2img pass at a larger size)", _TXT2IMG,
            # A1111's paste ticks "Hires fix" for "Denoising strength" with a hires key beside it; it always writes
            # "Hires upscaler" with the others, so that key alone tells (an inpaint's strength must not).
            infotext="Hires upscaler", parse=lambda text: True, keyword=False),
    Setting("hr_scale", float, 2.0, "hires fix: upscale by (when no hr_resize_x/y)", _TXT2IMG, infotext="Hires upscale",
            check=lambda v: None if v > 0 else "must be positive", keyword=False, example=1.5),
    Setting("hr_resize_x", int, 0, "hires fix: resize width to (0: from the height)", _TXT2IMG, infotext="Hires resize",
            parse=_resize_part(0), keyword=False, check=lambda v: None if v >= 0 else "must be >= 0"),
    Setting("hr_resize_y", int, 0, "hires fix: resize height to (0: from the width)", _TXT2IMG, infotext="Hires resize",
            parse=_resize_part(1), keyword=False, check=lambda v: None if v >= 0 else "must be >= 0"),
    Setting("hr_upscaler", str, "Latent", "hires fix: upscaler (Latent modes, None, Lanczos, Nearest, a model file or "
            "an A1111 name in upscaler_dir)", _TXT2IMG, infotext="Hires upscaler", check=_hr_upscaler, keyword=False,
            example="Latent (nearest-exact)"),
    Setting("hr_second_pass_steps", int, 0, "hires fix: steps of the second pass (0: the first pass's)", _TXT2IMG,
            infotext="Hires steps", check=lambda v: None if v >= 0 else "must be >= 0", keyword=False),
    Setting("hr_prompt", str, "", "hires fix: prompt of the second pass (empty: the prompt)", _TXT2IMG,
            infotext="Hires prompt", keyword=False),
    Setting("hr_negative_prompt", str, "", "hires fix: negative prompt of the second pass (empty: the negative prompt)",
            _TXT2IMG, infotext="Hires negative prompt", keyword=False),
    Setting("hr_sampler", str, "", "hires fix: sampler of the second pass (empty: the first pass's)", _TXT2IMG,
            infotext="Hires sampler", keyword=False),
    Setting("hr_scheduler", str, "", "hires fix: schedule type of the second pass (empty: the first pass's)", _TXT2IMG,
            infotext="Hires schedule type", keyword=False),
    Setting("hr_cfg", float, 0.0, "hires fix: CFG scale of the second pass, Forge's 'Hires CFG Scale' (0: the first "
            "pass's; A1111 has none)", _TXT2IMG, infotext="Hires CFG Scale", keyword=False),
    Setting("upscaler_dir", str, "", "folder of upscaler files for hr_upscaler names (A1111's models/ works)",
            _TXT2IMG, keyword=False),
)


for _row in HIRES_ROWS:
    register(_row)
register_infotext_key("Hires schedule type")  # read into hr_scheduler
