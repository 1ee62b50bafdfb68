"""Model denoisers: the UNet as k-diffusion and A1111 call it (eps, v, timestep and LCM forms).

Each has the denoiser signature (x, sigma [B], cond=...) -> denoised x0 estimate (the timestep model: eps at t).
Layers stack around them: ``InpaintBlend(CFGDenoiser(EpsDenoiser(unet, ...)))`` (CFG in `samplers.cfg`, the
inpaint blends in `samplers.blends`), so samplers never learn about CFG or masks. Semantics of k-diffusion
``CompVisDenoiser`` / ``CompVisVDenoiser`` and A1111 v1.10.
"""
from __future__ import annotations

from typing import Optional, Union

import torch

from .conds import Cond, UNet, _append_dims, _sigma_batch
from .schedules import DiscreteSchedule, LCMSchedule


class EpsDenoiser:
    """Eps-prediction UNet as a denoiser: ``D(x, sigma) = x - sigma * eps(x * c_in, t(sigma), cond)``.

    k-diffusion ``CompVisDenoiser`` semantics: ``c_in = 1 / sqrt(sigma * sigma + 1)`` multiplied in; ``t`` from
    :meth:`DiscreteSchedule.sigma_to_t`, fractional unless ``quantize`` (A1111 ``enable_quantization``); the
    UNet is called as ``unet(x_in, t, context=cond)`` with ``t`` a float32 ``[B]`` tensor.

    ``schedule`` is a :class:`DiscreteSchedule` or an ``alphas_cumprod`` tensor. ``image_cond`` ``[B, 5, h, w]``
    (latent mask, then masked-image latent) is for 9-channel inpainting UNets: it is concatenated after the
    scaling, unscaled, and repeated along the batch when the caller batches cond and uncond together.
    """

    def __init__(self, unet: UNet, schedule: Union[DiscreteSchedule, torch.Tensor],
                 image_cond: Optional[torch.Tensor] = None, quantize: bool = False) -> None:
        if isinstance(schedule, torch.Tensor):
            schedule = DiscreteSchedule.from_alphas_cumprod(schedule)
        if not isinstance(schedule, DiscreteSchedule):
            raise TypeError(f"schedule must be a DiscreteSchedule or an alphas_cumprod tensor, got {type(schedule)}")
        if image_cond is not None and image_cond.ndim != 4:
            raise ValueError(f"image_cond must be [B, C, h, w], got shape {tuple(image_cond.shape)}")
        self.unet = unet
        self.schedule = schedule
        self.image_cond = image_cond
        self.quantize = quantize

    def __repr__(self) -> str:
        ic = None if self.image_cond is None else tuple(self.image_cond.shape)
        return f"EpsDenoiser(schedule={self.schedule!r}, image_cond={ic}, quantize={self.quantize})"

    def get_scalings(self, sigma: torch.Tensor):
        """``(c_out, c_in)`` per batch item."""
        c_out = -sigma
        c_in = 1 / torch.sqrt(sigma * sigma + 1)
        return c_out, c_in

    def _image_cond_for(self, x: torch.Tensor) -> torch.Tensor:
        ic = self.image_cond
        if ic.shape[-2:] != x.shape[-2:] or x.shape[0] % ic.shape[0]:
            raise ValueError(f"image_cond {tuple(ic.shape)} does not fit latents {tuple(x.shape)}: need the same "
                             f"h, w and a batch that divides the latent batch")
        # [cond batch..., uncond batch...] each in image order, as A1111 builds image_cond_in
        return ic.to(device=x.device, dtype=x.dtype).repeat(x.shape[0] // ic.shape[0], 1, 1, 1)

    def _image_cond_rows(self, x: torch.Tensor, image_index: torch.Tensor) -> torch.Tensor:
        ic = self.image_cond
        index = torch.as_tensor(image_index, dtype=torch.long, device=ic.device)
        if index.shape != (x.shape[0],) or ic.shape[-2:] != x.shape[-2:]:
            raise ValueError(f"image_index {tuple(index.shape)} / image_cond {tuple(ic.shape)} do not fit latents "
                             f"{tuple(x.shape)}: need one index per row and the same h, w")
        rows = ic.expand(int(index.max()) + 1, -1, -1, -1) if ic.shape[0] == 1 else ic
        return rows[index].to(device=x.device, dtype=x.dtype)

    @property
    def accepts_cond_mark(self) -> bool:
        """True when the UNet wants to know the cond rows (a ``ControlledUNet``); CFG then passes ``cond_mark``."""
        return bool(getattr(self.unet, "accepts_cond_mark", False))

    def _unet(self, x: torch.Tensor, x_in: torch.Tensor, t: torch.Tensor, cond: Optional[Cond],
              image_index: Optional[torch.Tensor], cond_mark: Optional[torch.Tensor]) -> torch.Tensor:
        """The raw UNet output at timestep ``t`` for the (scaled) input ``x_in``, with the 9-channel image
        conditioning appended and an SDXL dict cond split into context and ADM vector."""
        if self.image_cond is not None:
            ic = self._image_cond_for(x) if image_index is None else self._image_cond_rows(x, image_index)
            x_in = torch.cat([x_in, ic], dim=1)
        extra = {} if cond_mark is None else {"cond_mark": cond_mark}
        if isinstance(cond, dict):
            return self.unet(x_in, t, context=cond["crossattn"], y=cond["vector"], **extra)
        return self.unet(x_in, t, context=cond, **extra)

    def _model_output(self, x: torch.Tensor, x_in: torch.Tensor, sigma: torch.Tensor, cond: Optional[Cond],
                      image_index: Optional[torch.Tensor], cond_mark: Optional[torch.Tensor]) -> torch.Tensor:
        t = self.schedule.sigma_to_t(sigma, quantize=self.quantize).to(torch.float32)
        return self._unet(x, x_in, t, cond, image_index, cond_mark)

    def __call__(self, x: torch.Tensor, sigma: torch.Tensor, cond: Optional[Cond] = None,
                 image_index: Optional[torch.Tensor] = None, cond_mark: Optional[torch.Tensor] = None) -> torch.Tensor:
        """``image_index`` (``[B]`` ints, optional) names the image each row of ``x`` belongs to, for batches that
        are not ``[cond batch..., uncond batch...]`` (several ``AND`` conds per image); it picks the rows of
        ``image_cond``. ``cond_mark`` (``[B]``, 1 = cond row, 0 = uncond row) is handed to the UNet. An SDXL dict
        cond calls ``unet(x_in, t, context=crossattn, y=vector)``."""
        sigma = _sigma_batch(sigma, x)
        c_out, c_in = (_append_dims(v, x.ndim) for v in self.get_scalings(sigma))
        eps = self._model_output(x, x * c_in, sigma, cond, image_index, cond_mark)
        return x + eps * c_out


class VDenoiser(EpsDenoiser):
    """v-prediction UNet (SD 2.x 768-v) as a denoiser, k-diffusion ``CompVisVDenoiser`` semantics (sigma_data 1):

    ``c_skip = 1 / (sigma^2 + 1)``, ``c_out = -sigma / sqrt(sigma^2 + 1)``, ``c_in = 1 / sqrt(sigma^2 + 1)``,
    ``D(x, sigma) = v(x * c_in, t(sigma), cond) * c_out + x * c_skip``.

    Everything else (t(sigma), 9-channel ``image_cond``, SDXL dict conds) is as in :class:`EpsDenoiser`.
    """

    sigma_data = 1.0

    def __repr__(self) -> str:
        return "V" + super().__repr__()[3:]

    def get_scalings(self, sigma: torch.Tensor):
        """``(c_skip, c_out, c_in)`` per batch item, in k-diffusion's expression order."""
        sd = self.sigma_data
        c_skip = sd ** 2 / (sigma ** 2 + sd ** 2)
        c_out = -sigma * sd / (sigma ** 2 + sd ** 2) ** 0.5
        c_in = 1 / (sigma ** 2 + sd ** 2) ** 0.5
        return c_skip, c_out, c_in

    def __call__(self, x: torch.Tensor, sigma: torch.Tensor, cond: Optional[Cond] = None,
                 image_index: Optional[torch.Tensor] = None, cond_mark: Optional[torch.Tensor] = None) -> torch.Tensor:
        sigma = _sigma_batch(sigma, x)
        c_skip, c_out, c_in = (_append_dims(v, x.ndim) for v in self.get_scalings(sigma))
        v = self._model_output(x, x * c_in, sigma, cond, image_index, cond_mark)
        return v * c_out + x * c_skip


class TimestepEpsModel(EpsDenoiser):
    """The eps UNet as A1111's timestep samplers call it: ``unet(x [+ image_cond], t, context=cond)`` returns eps.

    No input scaling and no sigma: ``t`` is the (integer or, for UniPC, fractional) timestep, float32 ``[B]``.
    """

    def __call__(self, x: torch.Tensor, t: torch.Tensor, cond: Optional[torch.Tensor] = None,
                 image_index: Optional[torch.Tensor] = None, cond_mark: Optional[torch.Tensor] = None) -> torch.Tensor:
        return self._unet(x, x, _sigma_batch(t, x).to(torch.float32), cond, image_index, cond_mark)


class LCMDenoiser(EpsDenoiser):
    """A1111's LCM denoiser: k-diffusion eps denoiser on the 50-level LCM table, consistency-model output scaling.

    ``t = sigma_to_t(sigma)`` is the nearest level's timestep (19, 39, ..., 999; int64); the UNet gets it as is.
    Returns ``c_skip x + c_out D`` with ``sigma_data = 0.5`` and c_skip, c_out from ``10 t``.
    """

    def __init__(self, unet: UNet, schedule: Union[DiscreteSchedule, torch.Tensor, None] = None,
                 image_cond: Optional[torch.Tensor] = None) -> None:
        if isinstance(schedule, torch.Tensor):
            schedule = DiscreteSchedule.from_alphas_cumprod(schedule)
        if not isinstance(schedule, LCMSchedule):
            schedule = LCMSchedule(schedule)
        super().__init__(unet, schedule, image_cond=image_cond)

    def __call__(self, x: torch.Tensor, sigma: torch.Tensor, cond: Optional[torch.Tensor] = None,
                 image_index: Optional[torch.Tensor] = None, cond_mark: Optional[torch.Tensor] = None) -> torch.Tensor:
        sigma = _sigma_batch(sigma, x)
        c_out, c_in = (_append_dims(v, x.ndim) for v in self.get_scalings(sigma))
        t = self.schedule.sigma_to_t(sigma)
        eps = self._unet(x, x * c_in, t, cond, image_index, cond_mark)
        denoised = x + eps * c_out
        sigma_data = 0.5
        scaled_t = _append_dims(t, x.ndim) * 10.0
        c_skip = sigma_data ** 2 / (scaled_t ** 2 + sigma_data ** 2)
        c_out_lcm = scaled_t / (scaled_t ** 2 + sigma_data ** 2) ** 0.5
        return c_out_lcm * denoised + c_skip * x


# The CFG layers and the inpaint blends lived here before; their names stay importable from this module.
from .blends import DifferentialBlend, InpaintBlend, InpaintBlendInput, SoftInpaintBlend  # noqa: E402
from .cfg import CFGDenoiser, CFGParts, ScheduledCFGDenoiser, stack_conds  # noqa: E402
from .conds import cat_conds  # noqa: E402

__all__ = ["EpsDenoiser", "VDenoiser", "TimestepEpsModel", "LCMDenoiser", "CFGDenoiser", "CFGParts",
           "ScheduledCFGDenoiser", "stack_conds", "cat_conds", "InpaintBlend", "InpaintBlendInput", "SoftInpaintBlend",
           "DifferentialBlend"]
