"""The UNet-level techniques as pipeline techniques: FreeU, token merging, SEG.

Each installs its module hooks around every UNet call and removes them when the call returns (also when it
raises), so a pipeline's UNet is never left patched. They act on the SD UNet only, never inside a ControlNet
(FreeU filters the skip after the ControlNet residual was added, as the extension does).
"""
from __future__ import annotations

from typing import Any, Callable

import torch

from ..pipeline.technique import Technique
from ..ui_numbers import ui_number
from .cfg_techniques import CallCounter
from .freeu import FreeUHook, FreeUSettings
from .pag import SmoothedEnergy, seg_active
from .tome import TokenMerging as TokenMergingPatch
from .tome import token_merging_ratio

# job.state key set while the hires fix's second pass samples (inpaintlab.techniques.hires)
HIRES_PASS = "hires pass"


class FreeU(CallCounter):
    """sd-webui-freeu. Its schedule counts denoiser calls over A1111's ``sampling_steps`` (``job.sampling_steps``)."""

    name = "FreeU"
    order = 30

    def __init__(self, settings: FreeUSettings):
        self.settings = settings

    @classmethod
    def for_job(cls, job: Any) -> "FreeU | None":
        s = job.settings
        if not s.get("freeu_stages"):
            return None
        return cls(FreeUSettings.from_infotext(s["freeu_stages"], s.get("freeu_schedule"), s.get("freeu_version")))

    def wrap_unet(self, job: Any, unet: Callable) -> Callable:
        module = job.pipe.unet

        def freeu_unet(*args: Any, **kw: Any) -> torch.Tensor:
            hook = FreeUHook(module, self.settings, job.sampling_steps or job.settings.get("steps", 1))
            hook.calls = getattr(self, "calls", 0)
            try:
                return unet(*args, **kw)
            finally:
                hook.remove()
        return freeu_unet

    def infotext(self, job: Any, extra: dict[str, Any]) -> None:
        extra.update(self.settings.infotext())


class TokenMerging(Technique):
    """A1111's token merging (tomesd 0.1.3 semantics, A1111's arguments): `ratio` in the job's (first) pass,
    `ratio_hr` in the hires fix's second pass (0: `ratio`, as A1111's `get_token_merging_ratio(for_hr=True)` falls
    back); `write_hr`: the job runs a hires pass, so `Token merging ratio hr` is written when that ratio is not 0."""

    name = "token merging"
    order = 35

    def __init__(self, ratio: float, ratio_hr: float = 0.0, write_hr: bool = False):
        self.ratio, self.write_hr = float(ratio), write_hr
        self.ratio_hr = float(ratio_hr) or self.ratio

    @classmethod
    def for_job(cls, job: Any) -> "TokenMerging | None":
        s = job.settings
        base, img2img = s.get("token_merging_ratio", 0.0), s.get("token_merging_ratio_img2img", 0.0)
        ratio = token_merging_ratio(job.kind, base, img2img, ratio_overridden=bool(base))
        hires = job.kind == "txt2img" and bool(s.get("enable_hr"))
        ratio_hr = token_merging_ratio(job.kind, base, img2img, s.get("token_merging_ratio_hr", 0.0),
                                       hires=True) if hires else 0.0
        return cls(ratio, ratio_hr, hires) if ratio or ratio_hr else None

    def wrap_unet(self, job: Any, unet: Callable) -> Callable:
        ratio = self.ratio_hr if job.state.get(HIRES_PASS) else self.ratio
        if ratio == 0:
            return unet
        module = job.pipe.unet

        def merged_unet(*args: Any, **kw: Any) -> torch.Tensor:
            with TokenMergingPatch(module, ratio):
                return unet(*args, **kw)
        return merged_unet

    def infotext(self, job: Any, extra: dict[str, Any]) -> None:
        # Both keys have fixed slots in A1111's infotext (after ENSD).
        if self.ratio != 0:
            extra["Token merging ratio"] = ui_number(self.ratio)
        if self.write_hr and self.ratio_hr != 0:
            extra["Token merging ratio hr"] = ui_number(self.ratio_hr)


class SEG(Technique):
    """Smoothed-Energy Guidance (incantations): blurred middle-block queries on the uncond rows, within the step
    window on A1111's lagging ``sampling_step`` (``job.step``)."""

    name = "SEG"
    order = 36

    def __init__(self, blur_sigma: float = 11.0, start: int = 0, end: int = 150):
        self.blur_sigma, self.start, self.end = float(blur_sigma), int(start), int(end)

    @classmethod
    def for_job(cls, job: Any) -> "SEG | None":
        s = job.settings
        if not s.get("seg_blur_sigma"):
            return None
        return cls(s["seg_blur_sigma"], s.get("seg_start", 0), s.get("seg_end", 150))

    def wrap_unet(self, job: Any, unet: Callable) -> Callable:
        if self.blur_sigma == 0:
            return unet
        module = job.pipe.unet

        def seg_unet(x: torch.Tensor, *args: Any, **kw: Any) -> torch.Tensor:
            seg = SmoothedEnergy(module, self.blur_sigma, x.shape[-2], x.shape[-1])
            seg.enabled = seg_active(job.step, self.start, self.end, self.blur_sigma)
            with seg:
                return unet(x, *args, **kw)
        return seg_unet

    def infotext(self, job: Any, extra: dict[str, Any]) -> None:
        if self.blur_sigma != 0:
            extra.update({"SEG Active": True, "SEG Blur Sigma": ui_number(self.blur_sigma),
                          "SEG Start Step": self.start, "SEG End Step": self.end})
