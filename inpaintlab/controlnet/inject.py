"""How ControlNet units act on the UNet at every call, as sd-webui-controlnet's hooked UNet forward does.

`ControlledUNet` takes the UNet's place inside `EpsDenoiser`: per call it runs each active unit's ControlNet on the
UNet input, scales its residuals by weight and control mode, sums the units and hands the sum to the UNet; for
`tile_colorfix` units it then pulls the low frequencies of the implied x0 towards the hint's latent, and for
`inpaint_only` units it replaces the implied x0 outside the mask by the hint's latent. It sits
below CFG, the per-step blend and soft inpainting, so those layers compose with it unchanged; CFG tells it which rows
are cond (`cond_mark`), and the sampler callback tells it the step (`step_callback`).
"""
from __future__ import annotations

import dataclasses
from typing import Any, Callable, Sequence

import numpy as np
import torch

from ..samplers.schedules import SD1_LINEAR_END, SD1_LINEAR_START, SD1_TIMESTEPS
from .model import ControlNet

from ..names import CONTROL_MODES  # noqa: E402
from .unit_infotext import check_control_mode  # noqa: E402 (torch-free, for `inpaintlab info`)
SOFT_INJECTION_DECAY = 0.825


# The extension computes SD1's 13 soft scales for every ControlNet and, for SDXL, keeps the first 10 (its residual
# count): the last 3 exponents are dropped, so SDXL's middle block gets 0.825 ** 3, not 1.
SDXL_DROPPED_SCALES = 3


def control_scales(weight: float, mode: str | int, n: int = 13, sdxl: bool = False) -> list[float]:
    """Per-residual scales, input blocks first, middle block last.

    Balanced: `weight` everywhere. Both other modes: `weight * 0.825 ** (n - 1 - i)` (0.0994 .. 1 times the weight
    for SD1's 13 residuals; the extension writes 12 - i, SD1's n - 1); for an SDXL ControlNet
    `weight * 0.825 ** (n + 2 - i)` (the extension's 12 - i over SDXL's 10 residuals: 0.0994 .. 0.5615).
    """
    mode = check_control_mode(mode)
    if mode == "Balanced":
        return [float(weight)] * n
    top = n - 1 + (SDXL_DROPPED_SCALES if sdxl else 0)
    return [weight * (SOFT_INJECTION_DECAY ** float(top - i)) for i in range(n)]


def hires_soft_injection(module: str) -> bool:
    """The extension forces the soft `0.825^(12 - i)` scales in a hires-fix second pass for preprocessors whose name
    contains "canny" or "mlsd" (whatever the control mode)."""
    return "canny" in module or "mlsd" in module


def in_hires_pass(latent_height: int, hint_height: int, hr_hint_height: int) -> bool:
    """The extension's test at every UNet call of a hires-fix job: the call belongs to the second pass unless the
    latent's pixel height is strictly closer to the first pass's hint than to the second's (only heights are
    compared; with equal sizes, hr_scale 1, every call counts as the second pass)."""
    h = latent_height * 8
    return not abs(h - hint_height) < abs(h - hr_hint_height)


def guidance_active(sampling_step: int, sampling_steps: int, start: float, end: float) -> bool:
    """A unit acts at a call iff start <= sampling_step / sampling_steps <= end (the extension's test)."""
    pct = sampling_step / sampling_steps
    return not (pct < start or pct > end)


def active_steps(steps: int, start: float, end: float) -> list[bool]:
    """Whether the unit acts at each of `steps` sampler steps. A1111 updates its step counter only in the step
    callback, so step i's calls see max(i - 1, 0): the window opens and closes one step late."""
    return [guidance_active(max(i - 1, 0), steps, start, end) for i in range(steps)]


def check_unit_numbers(weight: float, guidance_start: float, guidance_end: float) -> None:
    for name, value in (("control weight", weight), ("guidance start", guidance_start),
                        ("guidance end", guidance_end)):
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not np.isfinite(value):
            raise ValueError(f"{name} must be a finite number, got {value!r}")
    if not 0.0 <= guidance_start <= guidance_end <= 1.0:
        raise ValueError(f"need 0 <= guidance start <= guidance end <= 1, got {guidance_start}, {guidance_end}")


class LDMSchedule:
    """ldm's float32 schedule buffers, computed in float64 as `register_schedule` does (SD1 linear betas)."""

    def __init__(self, linear_start: float = SD1_LINEAR_START, linear_end: float = SD1_LINEAR_END,
                 timesteps: int = SD1_TIMESTEPS):
        betas = torch.linspace(linear_start ** 0.5, linear_end ** 0.5, timesteps, dtype=torch.float64) ** 2
        ac = np.cumprod(1.0 - betas.numpy(), axis=0)
        self.alphas_cumprod64 = ac
        self.sqrt_alphas_cumprod = torch.tensor(np.sqrt(ac), dtype=torch.float32)
        self.sqrt_one_minus_alphas_cumprod = torch.tensor(np.sqrt(1.0 - ac), dtype=torch.float32)
        self.sqrt_recip_alphas_cumprod = torch.tensor(np.sqrt(1.0 / ac), dtype=torch.float32)
        self.sqrt_recipm1_alphas_cumprod = torch.tensor(np.sqrt(1.0 / ac - 1), dtype=torch.float32)

    @staticmethod
    def _at(buffer: torch.Tensor, t: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
        return buffer.to(like.device)[t.to(like.device)].to(like.dtype).reshape(-1, *([1] * (like.ndim - 1)))

    def q_sample(self, x0: torch.Tensor, t: int, noise: torch.Tensor) -> torch.Tensor:
        """sqrt(a_t) x0 + sqrt(1 - a_t) noise with ldm's float32 buffers."""
        index = torch.full((noise.shape[0],), t, dtype=torch.long)
        return (self._at(self.sqrt_alphas_cumprod, index, noise) * x0
                + self._at(self.sqrt_one_minus_alphas_cumprod, index, noise) * noise)


SD1_SCHEDULE = LDMSchedule()


def _corrected_eps(x: torch.Tensor, timesteps: torch.Tensor, eps: torch.Tensor, weight: float, schedule: LDMSchedule,
                   correct: Callable[[torch.Tensor], torch.Tensor]) -> torch.Tensor:
    """The extension's x0 hooks: the x0 implied by eps at the (rounded) UNet timesteps goes through `correct`, is
    turned back into eps, and blended with the UNet's own by clamp(weight, 0, 1)."""
    t = torch.round(timesteps.float()).long()
    recip = schedule._at(schedule.sqrt_recip_alphas_cumprod, t, x)
    recipm1 = schedule._at(schedule.sqrt_recipm1_alphas_cumprod, t, x)
    x0 = correct(recip * x - recipm1 * eps)
    eps_prediction = (recip * x - x0) / recipm1
    w = max(0.0, min(1.0, float(weight)))
    return eps_prediction * w + eps * (1 - w)


def restore_eps(x: torch.Tensor, timesteps: torch.Tensor, eps: torch.Tensor, x0_origin: torch.Tensor,
                mask: torch.Tensor, weight: float, schedule: LDMSchedule = SD1_SCHEDULE) -> torch.Tensor:
    """inpaint_only's x0 restore: the UNet output eps for input x [N,4,h,w] at UNet timesteps [N], with the
    implied x0 replaced by `x0_origin` where `mask` (latent, 1 = repaint) is 0; blended by clamp(weight, 0, 1)."""
    return _corrected_eps(x, timesteps, eps, weight, schedule, lambda x0: x0 * mask + x0_origin * (1 - mask))


def box_blur(x: torch.Tensor, k: int) -> torch.Tensor:
    """The extension's colorfix blur: replicate-pad by k, then a (2k+1)^2 mean with stride 1 (same size out)."""
    padded = torch.nn.functional.pad(x, (k, k, k, k), mode="replicate")
    return torch.nn.functional.avg_pool2d(padded, (2 * k + 1, 2 * k + 1), stride=(1, 1))


def colorfix_eps(x: torch.Tensor, timesteps: torch.Tensor, eps: torch.Tensor, x0_origin: torch.Tensor, k: int,
                 sharpness: float | None, weight: float, cond_mark: torch.Tensor | None = None,
                 schedule: LDMSchedule = SD1_SCHEDULE) -> torch.Tensor:
    """tile_colorfix's x0 correction of the UNet output eps for input x [N,4,h,w]: the implied x0 keeps its high
    frequencies and takes its low ones (box blur of radius k) from the hint's latent `x0_origin`. With a sharpness
    (tile_colorfix+sharp) the uncond rows (cond_mark 0) are blurred further by sharpness/100 of a box blur, which CFG
    turns into sharpening. Blended by clamp(weight, 0, 1)."""

    def correct(x0_prediction: torch.Tensor) -> torch.Tensor:
        x0 = x0_prediction - box_blur(x0_prediction, k) + box_blur(x0_origin, k)
        if sharpness is None:
            return x0
        detail = float(sharpness) * 0.01
        neg = detail * box_blur(x0, k) + (1 - detail) * x0
        mark = torch.ones(x.shape[0]) if cond_mark is None else cond_mark
        mark = mark.to(device=x.device, dtype=x0.dtype).reshape(-1, 1, 1, 1)
        return mark * x0 + (1 - mark) * neg

    return _corrected_eps(x, timesteps, eps, weight, schedule, correct)


@dataclasses.dataclass
class ControlInput:
    """One unit, ready for sampling.

    hint: the ControlNet input [1,3,H,W] (masked pixels -1). x0_origin / restore_mask: the hint's latent and the
    dilated latent mask for inpaint_only (None otherwise). inpaint_cond: [1,5,h,w] that replaces a 9-channel UNet's
    conditioning (latent mask, masked-hint latent), or None. colorfix: (radius, sharpness or None) and
    colorfix_latent (the hint's latent) for tile_colorfix(+sharp), or None. hires_soft: a canny / mlsd unit, whose
    scales are the soft ones in a hires-fix second pass (`hires_soft_injection`).
    """

    model: ControlNet
    hint: torch.Tensor
    weight: float = 1.0
    control_mode: str = "Balanced"
    guidance_start: float = 0.0
    guidance_end: float = 1.0
    x0_origin: torch.Tensor | None = None
    restore_mask: torch.Tensor | None = None
    inpaint_cond: torch.Tensor | None = None
    colorfix: tuple[int, float | None] | None = None
    colorfix_latent: torch.Tensor | None = None
    hires_soft: bool = False

    def __post_init__(self) -> None:
        self.control_mode = check_control_mode(self.control_mode)
        check_unit_numbers(self.weight, self.guidance_start, self.guidance_end)
        if (self.x0_origin is None) != (self.restore_mask is None):
            raise ValueError("x0_origin and restore_mask go together (inpaint_only's restore)")
        if (self.colorfix is None) != (self.colorfix_latent is None):
            raise ValueError("colorfix and colorfix_latent go together (tile_colorfix)")


class ControlledUNet:
    """UNet call with ControlNet units: `(x, t, context, cond_mark=None, y=None) -> eps`, a drop-in for the UNet
    inside `EpsDenoiser` (y: SDXL's ADM vector, handed to the UNet and to every SDXL ControlNet alike).

    sampling_steps: the steps the sampler actually runs (A1111: `steps` for txt2img, `t_enc + 1` for img2img).
    Wire `step_callback` into the sampler's callback so the guidance window sees A1111's step counter; without it
    every call counts as step 0. cond_mark [N] (1 = cond row, 0 = uncond row) comes from `CFGDenoiser`; when absent
    every row counts as cond, as in the extension when its prompt marks are missing.

    hr_units: with hires fix, the same units prepared at the second pass's size (same order). Each call picks the set
    by the extension's test (`in_hires_pass`); in the second pass canny / mlsd units take the soft scales and
    tile_colorfix doubles its blur radius, as the extension does.
    """

    accepts_cond_mark = True

    def __init__(self, unet: Any, units: Sequence[ControlInput], sampling_steps: int,
                 schedule: LDMSchedule = SD1_SCHEDULE, hr_units: Sequence[ControlInput] | None = None):
        if isinstance(sampling_steps, bool) or not isinstance(sampling_steps, int) or sampling_steps < 1:
            raise ValueError(f"sampling_steps must be a positive int, got {sampling_steps!r}")
        if hr_units is not None and len(hr_units) != len(units):
            raise ValueError(f"hr_units must pair with units: {len(hr_units)} against {len(units)}")
        self.unet, self.units, self.sampling_steps, self.schedule = unet, list(units), sampling_steps, schedule
        self.low_units = self.units
        self.hr_units = None if hr_units is None else list(hr_units)
        self.sampling_step = 0
        self.hires = False

    def __repr__(self) -> str:
        return (f"ControlledUNet(units={len(self.units)}, sampling_steps={self.sampling_steps}, "
                f"sampling_step={self.sampling_step})")

    def step_callback(self, d: dict) -> None:
        """k-diffusion callback: A1111 sets its step counter to the finished step's index."""
        self.sampling_step = int(d["i"])

    def active(self, unit: ControlInput) -> bool:
        return guidance_active(self.sampling_step, self.sampling_steps, unit.guidance_start, unit.guidance_end)

    def select(self, x: torch.Tensor) -> None:
        """Use the first pass's or the second pass's units for a UNet input x (the extension's per-call test)."""
        if not self.hr_units or not self.low_units:
            return
        self.hires = in_hires_pass(x.shape[-2], self.low_units[0].hint.shape[-2], self.hr_units[0].hint.shape[-2])
        self.units = self.hr_units if self.hires else self.low_units

    def controls(self, x: torch.Tensor, timesteps: torch.Tensor, context: torch.Tensor,
                 cond_mark: torch.Tensor | None = None, y: torch.Tensor | None = None) -> list[torch.Tensor] | None:
        """Summed, scaled residuals of the active units for UNet input x, or None when no unit acts."""
        total: list[torch.Tensor] | None = None
        for unit in self.units:
            if not self.active(unit):
                continue
            cn_in = unit.model.config.unet.in_channels
            x_cn = x[:, :cn_in] if x.shape[1] != cn_in else x  # a 9-channel UNet's ControlNet sees the noisy latent
            sdxl = unit.model.config.family == "sdxl"
            control = unit.model(x_cn, unit.hint.to(x.device), timesteps, context, y if sdxl else None)
            if unit.control_mode == "ControlNet is more important":
                mark = torch.ones(x.shape[0]) if cond_mark is None else cond_mark
                mark = mark.to(device=x.device, dtype=control[0].dtype).reshape(-1, 1, 1, 1)
                control = [c * mark for c in control]
            soft = self.hires and unit.hires_soft and unit.control_mode == "Balanced"
            scales = control_scales(unit.weight, CONTROL_MODES[1] if soft else unit.control_mode, len(control),
                                    sdxl=sdxl)
            control = [c * s for c, s in zip(control, scales)]
            total = control if total is None else [a + b for a, b in zip(total, control)]
        return total

    def __call__(self, x: torch.Tensor, timesteps: torch.Tensor, context: torch.Tensor,
                 cond_mark: torch.Tensor | None = None, y: torch.Tensor | None = None) -> torch.Tensor:
        timesteps = torch.as_tensor(timesteps, device=x.device)
        if timesteps.ndim == 0:
            timesteps = timesteps.expand(x.shape[0])
        self.select(x)
        control = self.controls(x, timesteps, context, cond_mark, y)
        for unit in self.units:
            if unit.inpaint_cond is not None and x.shape[1] == 9:
                cond = unit.inpaint_cond.to(device=x.device, dtype=x.dtype)
                x = torch.cat([x[:, :4], cond.expand(x.shape[0], -1, -1, -1)], dim=1)
        extra = {} if y is None else {"y": y}  # SD1 UNets (and their wrappers) take no y
        if control is not None:
            extra["control"] = control
        eps = self.unet(x, timesteps, context, **extra)
        for unit in self.units:  # the extension's order: every colorfix unit, then every inpaint_only restore
            if unit.colorfix is not None:
                k = unit.colorfix[0] * (2 if self.hires else 1)  # the extension doubles the radius in the hires pass
                eps = colorfix_eps(x[:, :4], timesteps, eps, unit.colorfix_latent.to(eps), k,
                                   unit.colorfix[1], unit.weight, cond_mark, self.schedule)
        for unit in self.units:
            if unit.x0_origin is not None:
                eps = restore_eps(x[:, :4], timesteps, eps, unit.x0_origin.to(eps), unit.restore_mask.to(eps),
                                  unit.weight, self.schedule)
        return eps
