"""Denoiser wrappers that stack around the UNet: ``InpaintBlend(CFGDenoiser(EpsDenoiser(unet, ...)))``.

Each layer has the denoiser signature (x, sigma [B]) -> denoised x0 estimate, so samplers never learn about CFG or
masks. Semantics of k-diffusion ``CompVisDenoiser`` and A1111 v1.10 ``CFGDenoiser`` (spec/samplers.md §2, §8.6;
spec/a1111-inpaint.md step 15).
"""
from __future__ import annotations

from typing import Callable, Optional, Union

import torch

from ..masking.blend import blend_latents
from .schedules import DiscreteSchedule

UNet = Callable[..., torch.Tensor]
Denoiser = Callable[..., torch.Tensor]


def _sigma_batch(sigma: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    sigma = torch.as_tensor(sigma, device=x.device)
    if sigma.ndim == 0:
        sigma = sigma.expand(x.shape[0])
    if sigma.ndim != 1 or sigma.shape[0] != x.shape[0]:
        raise ValueError(f"sigma must have one value per batch item ({x.shape[0]}), got shape {tuple(sigma.shape)}")
    return sigma


def _append_dims(v: torch.Tensor, ndim: int) -> torch.Tensor:
    return v.reshape(v.shape + (1,) * (ndim - v.ndim))


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

    def __call__(self, x: torch.Tensor, sigma: torch.Tensor, cond: Optional[torch.Tensor] = None) -> torch.Tensor:
        sigma = _sigma_batch(sigma, x)
        c_out, c_in = (_append_dims(v, x.ndim) for v in self.get_scalings(sigma))
        x_in = x * c_in
        if self.image_cond is not None:
            x_in = torch.cat([x_in, self._image_cond_for(x)], dim=1)
        t = self.schedule.sigma_to_t(sigma, quantize=self.quantize).to(torch.float32)
        eps = self.unet(x_in, t, context=cond)
        return x + eps * c_out


class CFGDenoiser:
    """Classifier-free guidance on denoised outputs, A1111 order: ``D_u + (D_c - D_u) * cfg_scale``.

    ``cond``/``uncond`` are text embeddings ``[B, L, C]`` (or ``[1, L, C]``, shared by the batch). When both have
    the same token length, one inner call on the batch ``[cond..., uncond...]``; otherwise (A1111 with
    ``pad_cond_uncond`` off) two calls, cond half first.
    """

    def __init__(self, inner: Denoiser, cond: torch.Tensor, uncond: torch.Tensor, cfg_scale: float) -> None:
        for name, c in (("cond", cond), ("uncond", uncond)):
            if not isinstance(c, torch.Tensor) or c.ndim != 3:
                raise ValueError(f"{name} must be a [B, L, C] tensor, got {getattr(c, 'shape', type(c))}")
        if cond.shape[2] != uncond.shape[2]:
            raise ValueError(f"cond and uncond widths differ: {tuple(cond.shape)} vs {tuple(uncond.shape)}")
        self.inner = inner
        self.cond = cond
        self.uncond = uncond
        self.cfg_scale = float(cfg_scale)

    def __repr__(self) -> str:
        return (f"CFGDenoiser(cond={tuple(self.cond.shape)}, uncond={tuple(self.uncond.shape)}, "
                f"cfg_scale={self.cfg_scale})")

    @staticmethod
    def _per_image(c: torch.Tensor, batch: int, name: str) -> torch.Tensor:
        if c.shape[0] == batch:
            return c
        if c.shape[0] == 1:
            return c.expand(batch, -1, -1)
        raise ValueError(f"{name} batch {c.shape[0]} does not match the latent batch {batch}")

    def __call__(self, x: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
        batch = x.shape[0]
        sigma = _sigma_batch(sigma, x)
        cond = self._per_image(self.cond, batch, "cond")
        uncond = self._per_image(self.uncond, batch, "uncond")
        x_in = torch.cat([x, x])
        sigma_in = torch.cat([sigma, sigma])
        if cond.shape[1] == uncond.shape[1]:
            x_out = self.inner(x_in, sigma_in, cond=torch.cat([cond, uncond]))
        else:
            x_out = torch.cat([self.inner(x_in[:batch], sigma_in[:batch], cond=cond),
                               self.inner(x_in[batch:], sigma_in[batch:], cond=uncond)])
        denoised_cond, denoised_uncond = x_out[:batch], x_out[batch:]
        denoised = denoised_uncond.clone()
        denoised += (denoised_cond - denoised_uncond) * (1.0 * self.cfg_scale)
        return denoised


class InpaintBlend:
    """Outermost layer for inpainting: after CFG, keep ``init_latent`` where ``nmask`` is 0.

    ``D = D * nmask + init_latent * (1 - nmask)`` (A1111 for k-diffusion samplers; the clean init latent goes into
    the x0 estimate, not into the noisy x). ``nmask`` is the latent mask, 1 = repaint, broadcastable to x.
    """

    def __init__(self, inner: Denoiser, init_latent: torch.Tensor, nmask: torch.Tensor) -> None:
        if init_latent.ndim != 4 or nmask.ndim != 4:
            raise ValueError(f"init_latent and nmask must be 4-D, got {tuple(init_latent.shape)}, "
                             f"{tuple(nmask.shape)}")
        try:
            torch.broadcast_shapes(nmask.shape, init_latent.shape)
        except RuntimeError:
            raise ValueError(f"nmask {tuple(nmask.shape)} does not broadcast to init_latent "
                             f"{tuple(init_latent.shape)}") from None
        self.inner = inner
        self.init_latent = init_latent
        self.nmask = nmask

    def __repr__(self) -> str:
        return f"InpaintBlend(init_latent={tuple(self.init_latent.shape)}, nmask={tuple(self.nmask.shape)})"

    def __call__(self, x: torch.Tensor, sigma: torch.Tensor, **kwargs) -> torch.Tensor:
        denoised = self.inner(x, sigma, **kwargs)
        return blend_latents(denoised, self.init_latent, self.nmask)
