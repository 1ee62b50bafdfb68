"""A1111 v1.10's hires fix ("Hires. fix" of txt2img), the parts between the two passes.

* `target_size`: `calculate_target_resolution` — `Hires upscale` multiplies and truncates; `Hires resize` W×H
  covers the target keeping the aspect ratio, then crops the latent (`truncate_x/y`, in latent pixels).
* `upscale_latent`: the six latent modes, each one `F.interpolate` to `(to_y // 8, to_x // 8)` with A1111's mode and
  antialias flag, then the truncation crop.
* `upscale_decoded`: every other upscaler ("None", "Lanczos", "Nearest", model upscalers): the decoded first pass is
  truncated to uint8, resized with `resize_image` (mode 0, the upscaler), and returned in [0, 1] for VAE encoding.
* `second_pass_steps`: the second pass runs `hr_second_pass_steps or steps` steps over the tail of a schedule of
  `int(steps / min(denoising_strength, 0.999))` steps (A1111's "fixed steps" img2img branch, always taken here).
* `hires_infotext` / `hires_from_infotext`: the `Hires …` keys in A1111's order and their reading back.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from .errors import InpaintlabError
from .upscalers import BUILTIN, Tiling, UpscalerModel, resize_image

# hr_upscaler name → (F.interpolate mode, antialias)
LATENT_MODES: dict[str, tuple[str, bool]] = {
    "Latent": ("bilinear", False),
    "Latent (antialiased)": ("bilinear", True),
    "Latent (bicubic)": ("bicubic", False),
    "Latent (bicubic antialiased)": ("bicubic", True),
    "Latent (nearest)": ("nearest", False),
    "Latent (nearest-exact)": ("nearest-exact", False),
}
HIRES_UPSCALERS = (*LATENT_MODES, *BUILTIN)


class HiresError(InpaintlabError):
    """Hires-fix settings that cannot be used; the message names the setting."""


@dataclass(frozen=True)
class HiresTarget:
    """The second pass's size: `to_x × to_y` before the latent crop of `truncate_x/y` latent pixels."""

    to_x: int
    to_y: int
    truncate_x: int = 0
    truncate_y: int = 0

    @property
    def latent_size(self) -> tuple[int, int]:
        """(height, width) of the second pass's latent after the crop."""
        return self.to_y // 8 - self.truncate_y, self.to_x // 8 - self.truncate_x

    @property
    def image_size(self) -> tuple[int, int]:
        """(width, height) of the final image: 8 × the cropped latent (a non-multiple of 8 is floored)."""
        h, w = self.latent_size
        return 8 * w, 8 * h


def target_size(width: int, height: int, hr_scale: float = 2.0, hr_resize_x: int = 0, hr_resize_y: int = 0
                ) -> HiresTarget:
    """A1111's `calculate_target_resolution` (without the old "first pass size" compatibility option)."""
    if hr_resize_x < 0 or hr_resize_y < 0:
        raise HiresError(f"hr_resize_x/hr_resize_y must be >= 0, got {hr_resize_x}x{hr_resize_y}")
    if hr_resize_x == 0 and hr_resize_y == 0:
        if not hr_scale > 0:
            raise HiresError(f"hr_scale must be positive, got {hr_scale}")
        return HiresTarget(int(width * hr_scale), int(height * hr_scale))
    if hr_resize_y == 0:
        return HiresTarget(hr_resize_x, hr_resize_x * height // width)
    if hr_resize_x == 0:
        return HiresTarget(hr_resize_y * width // height, hr_resize_y)
    if width / height < hr_resize_x / hr_resize_y:
        to_x, to_y = hr_resize_x, hr_resize_x * height // width
    else:
        to_x, to_y = hr_resize_y * width // height, hr_resize_y
    return HiresTarget(to_x, to_y, (to_x - hr_resize_x) // 8, (to_y - hr_resize_y) // 8)


def crop_latent(samples: torch.Tensor, target: HiresTarget) -> torch.Tensor:
    """A1111's crop `samples[:, :, ty//2 : H - (ty+1)//2, tx//2 : W - (tx+1)//2]`."""
    tx, ty = target.truncate_x, target.truncate_y
    h, w = samples.shape[-2:]
    return samples[..., ty // 2: h - (ty + 1) // 2, tx // 2: w - (tx + 1) // 2]


def upscale_latent(samples: torch.Tensor, mode: str, target: HiresTarget) -> torch.Tensor:
    """First-pass latents resized by a latent mode (see LATENT_MODES), then cropped."""
    if mode not in LATENT_MODES:
        raise HiresError(f"{mode!r} is not a latent upscale mode; choose from {', '.join(LATENT_MODES)}")
    interp, antialias = LATENT_MODES[mode]
    out = F.interpolate(samples, size=(target.to_y // 8, target.to_x // 8), mode=interp, antialias=antialias)
    return crop_latent(out, target)


def upscale_decoded(decoded: torch.Tensor, target: HiresTarget, upscaler: str | UpscalerModel | None,
                    tiling: Tiling | None = None) -> torch.Tensor:
    """Decoded first-pass images [B,3,H,W] in [-1, 1] → the upscaled images [B,3,to_y,to_x] in [0, 1] (float32).

    Each image: `uint8(clamp((x + 1) / 2, 0, 1) · 255)` (truncation), `resize_image` to `to_x × to_y` with the
    upscaler, `/ 255`; the caller VAE-encodes the result and crops the latent with `crop_latent`.
    """
    out = []
    for x in decoded:
        arr = ((x.float() + 1) / 2).clamp(0, 1).mul(255).to(torch.uint8).permute(1, 2, 0).cpu().numpy()
        img = resize_image(Image.fromarray(arr, "RGB"), target.to_x, target.to_y, upscaler, tiling)
        out.append(torch.from_numpy(np.asarray(img, dtype=np.float32) / 255).permute(2, 0, 1))
    return torch.stack(out).to(decoded.device)


def second_pass_steps(steps: int, hr_second_pass_steps: int, denoising_strength: float) -> tuple[int, int]:
    """(steps run, length of the schedule they are the tail of) for the second pass."""
    run = hr_second_pass_steps or steps
    total = int(run / min(denoising_strength, 0.999)) if denoising_strength > 0 else 0
    return run, total


def hires_infotext(settings: Mapping[str, Any], *, sampler: str | None = None) -> dict[str, Any]:
    """The `Hires …` keys A1111 writes (in its order) for the hires settings in `settings` (API field names).

    `sampler` is the first pass's sampler name (`Hires sampler` is written only when different). `Hires schedule
    type` is written by the sampling code when the second pass's label differs, so it is not produced here. `Hires CFG
    Scale` is Forge's key (A1111 has no hires CFG); it is written only when `hr_cfg` is set.
    """
    s = settings
    out: dict[str, Any] = {"Denoising strength": s.get("denoising_strength", 0.75)}
    hr_sampler = s.get("hr_sampler")
    if hr_sampler and hr_sampler != sampler:
        out["Hires sampler"] = hr_sampler
    prompt, negative = s.get("prompt", ""), s.get("negative_prompt", "")
    if s.get("hr_prompt") and s["hr_prompt"] != prompt:
        out["Hires prompt"] = s["hr_prompt"]
    if s.get("hr_negative_prompt") and s["hr_negative_prompt"] != negative:
        out["Hires negative prompt"] = s["hr_negative_prompt"]
    x, y = s.get("hr_resize_x", 0), s.get("hr_resize_y", 0)
    if x == 0 and y == 0:
        out["Hires upscale"] = s.get("hr_scale", 2.0)
    else:
        out["Hires resize"] = f"{x}x{y}"
    if s.get("hr_second_pass_steps", 0):
        out["Hires steps"] = s["hr_second_pass_steps"]
    if s.get("hr_upscaler") is not None:
        out["Hires upscaler"] = s["hr_upscaler"]
    if s.get("hr_cfg") is not None:
        out["Hires CFG Scale"] = s["hr_cfg"]
    return out


def hires_from_infotext(fields: Mapping[str, str]) -> dict[str, Any]:
    """Hires settings (API names) from parsed infotext fields, as A1111's paste: hires fix is on when `Denoising
    strength` is present; resize from `Hires resize` ("WxH"); missing keys give A1111's paste defaults."""
    if "Denoising strength" not in fields:
        return {"enable_hr": False}
    out: dict[str, Any] = {"enable_hr": True, "denoising_strength": float(fields["Denoising strength"]),
                           "hr_prompt": fields.get("Hires prompt", ""),
                           "hr_negative_prompt": fields.get("Hires negative prompt", "")}
    if "Hires upscale" in fields:
        out["hr_scale"] = float(fields["Hires upscale"])
    if "Hires upscaler" in fields:
        out["hr_upscaler"] = fields["Hires upscaler"]
    if "Hires steps" in fields:
        out["hr_second_pass_steps"] = int(float(fields["Hires steps"]))
    size = fields.get("Hires resize", "")
    if size:
        try:
            out["hr_resize_x"], out["hr_resize_y"] = (int(v) for v in size.split("x"))
        except ValueError:
            raise HiresError(f"Hires resize: {size!r} is not WIDTHxHEIGHT") from None
    if fields.get("Hires sampler", "Use same sampler") != "Use same sampler":
        out["hr_sampler"] = fields["Hires sampler"]
    if fields.get("Hires schedule type", "Use same scheduler") != "Use same scheduler":
        out["hr_scheduler"] = fields["Hires schedule type"]
    if "Hires CFG Scale" in fields:
        out["hr_cfg"] = float(fields["Hires CFG Scale"])
    return out
