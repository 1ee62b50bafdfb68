"""The inpaint blends, outermost layers around the CFG denoiser: A1111's binary blend (after CFG, or into the model
input for the timestep samplers), soft inpainting's per-step blend and Differential Diffusion's per-step reset."""
from __future__ import annotations

from typing import Callable, Optional

import torch

from ..masking.blend import blend_latents
from ..masking.soft import SoftInpaintingSettings, differential_masks, latent_blend, modified_nmask
from .conds import Denoiser, _append_dims, _sigma_batch


def _check_latent_pair(init_latent: torch.Tensor, mask: torch.Tensor, name: str,
                       mask_ndims: tuple[int, ...] = (3, 4)) -> None:
    if init_latent.ndim != 4 or mask.ndim not in mask_ndims:
        dims = " or ".join(f"{n}-D" for n in mask_ndims)
        raise ValueError(f"init_latent must be 4-D and {name} {dims}, got {tuple(init_latent.shape)}, "
                         f"{tuple(mask.shape)}")
    try:
        torch.broadcast_shapes(mask.shape, init_latent.shape)
    except RuntimeError:
        raise ValueError(f"{name} {tuple(mask.shape)} does not broadcast to init_latent "
                         f"{tuple(init_latent.shape)}") from None


class InpaintBlend:
    """Outermost layer for inpainting: after CFG, keep ``init_latent`` where ``nmask`` is 0.

    ``D = D * nmask + init_latent * (1 - nmask)`` (A1111 for k-diffusion samplers; the clean init latent goes into
    the x0 estimate, not into the noisy x). ``nmask`` is the latent mask, 1 = repaint, broadcastable to x.
    """

    def __init__(self, inner: Denoiser, init_latent: torch.Tensor, nmask: torch.Tensor) -> None:
        _check_latent_pair(init_latent, nmask, "nmask", mask_ndims=(4,))
        self.inner = inner
        self.init_latent = init_latent
        self.nmask = nmask

    def __repr__(self) -> str:
        return f"InpaintBlend(init_latent={tuple(self.init_latent.shape)}, nmask={tuple(self.nmask.shape)})"

    def __call__(self, x: torch.Tensor, sigma: torch.Tensor, **kwargs) -> torch.Tensor:
        denoised = self.inner(x, sigma, **kwargs)
        return blend_latents(denoised, self.init_latent, self.nmask)

    @property
    def last_uncond(self) -> Optional[torch.Tensor]:
        return getattr(self.inner, "last_uncond", None)


class InpaintBlendInput(InpaintBlend):
    """Inpainting for A1111's timestep samplers (``mask_before_denoising``): the blend goes into the model *input*.

    ``model(x * nmask + init_latent * (1 - nmask), t)`` with the clean init latent; the sampler's own x is left alone,
    so its x0 and direction terms use the unblended x.
    """

    def __call__(self, x: torch.Tensor, sigma: torch.Tensor, **kwargs) -> torch.Tensor:
        return self.inner(blend_latents(x, self.init_latent, self.nmask), sigma, **kwargs)


class SoftInpaintBlend:
    """A1111 v1.10 soft inpainting's per-step blend, in place of :class:`InpaintBlend`.

    Each call blends ``latent_blend(init_latent, D, modified_nmask(nmask, sigma[0]))``: a lerp towards the denoised
    estimate by ``nmask ** (sigma ** schedule_bias * preservation_strength)`` with the power-mean magnitude correction
    (float64). ``nmask`` is the *unrounded* latent mask (1 = repaint), [C, h, w] or [B or 1, C or 1, h, w]. There is
    no final latent blend after sampling: decode the sampler output as it is.

    mask_before_denoising: A1111's timestep samplers (DDIM, PLMS, UniPC) blend the clean init latent into the noisy
        input before the model call instead of into its output. exponent_sigma: maps the call's sigma [B] to the value
        A1111 raises (those samplers pass the timestep, which makes every partial pixel keep the original); default:
        the sigma itself.
    """

    def __init__(self, inner: Denoiser, init_latent: torch.Tensor, nmask: torch.Tensor,
                 settings: Optional[SoftInpaintingSettings] = None, *, mask_before_denoising: bool = False,
                 exponent_sigma: Optional[Callable[[torch.Tensor], torch.Tensor]] = None) -> None:
        _check_latent_pair(init_latent, nmask, "nmask")
        self.inner = inner
        self.init_latent = init_latent
        self.nmask = nmask
        self.settings = settings or SoftInpaintingSettings()
        self.mask_before_denoising = mask_before_denoising
        self.exponent_sigma = exponent_sigma

    def __repr__(self) -> str:
        return (f"SoftInpaintBlend(init_latent={tuple(self.init_latent.shape)}, nmask={tuple(self.nmask.shape)}, "
                f"settings={self.settings}, mask_before_denoising={self.mask_before_denoising})")

    def weight(self, sigma: torch.Tensor) -> torch.Tensor:
        """The blend weight t of the denoised latent at this call's sigma ([B], A1111 uses entry 0)."""
        value = sigma if self.exponent_sigma is None else self.exponent_sigma(sigma)
        return modified_nmask(self.nmask, value[0], self.settings.schedule_bias, self.settings.preservation_strength)

    def blend(self, current: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
        t = self.weight(_sigma_batch(sigma, current)).to(current.device)
        return latent_blend(self.init_latent.to(current), current, t, self.settings.transition_contrast_boost)

    def __call__(self, x: torch.Tensor, sigma: torch.Tensor, **kwargs) -> torch.Tensor:
        if self.mask_before_denoising:
            return self.inner(self.blend(x, sigma), sigma, **kwargs)
        return self.blend(self.inner(x, sigma, **kwargs), sigma)


class DifferentialBlend:
    """Differential Diffusion (Levin & Fried 2023): per step, pixels whose change is below the step's threshold are
    reset to the original latent noised to the current sigma, before the model call.

    ``change_map`` [h, w], [1 or B, 1 or C, h, w]: 1 = change fully, 0 = keep (the inpaint convention; the reference
    pipeline's map is ``1 − change_map``). ``sigmas`` is the schedule the sampler runs (n + 1 values ending in 0), ``noise``
    the noise of the start latent ``init_latent + noise * sigmas[0]``: one noise sample for every step, as the
    reference's ``add_noise`` over all timesteps. Step i (the call whose sigma is ``sigmas[i]``) uses the threshold
    ``i / n``: ``x ← where(1 − change > i/n, init_latent + noise·sigma, x)``.

    The reset changes the sampler's own state: ``x`` is overwritten in place before the model call, so the sampler
    steps from the replaced latent (and its multistep history holds true model outputs), exactly as the reference
    pipeline's scheduler steps from its replaced latents. Every k-diffusion-style sampler passes its state tensor to the
    model, so this works with all of them; pass a start latent you do not need afterwards. Calls at sigmas between
    schedule entries (second-order or churned evaluations) use the step of the next schedule entry below or at them.
    No final blend: decode the sampler output as it is.

    add_noise(init_latent, noise, value [B]) -> noised latent: how the original is noised to a call's value; default
    the k-diffusion form ``init + noise·sigma``. For samplers called with timesteps (A1111's DDIM/PLMS/UniPC), pass the
    timesteps run (descending, then a final 0) as ``sigmas`` and the VP form ``√ā_t·init + √(1 − ā_t)·noise``.
    """

    def __init__(self, inner: Denoiser, init_latent: torch.Tensor, change_map: torch.Tensor, sigmas: torch.Tensor,
                 noise: torch.Tensor,
                 add_noise: Optional[Callable[[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]] = None) -> None:
        if change_map.ndim == 2:
            change_map = change_map[None, None]
        _check_latent_pair(init_latent, change_map, "change_map")
        if noise.shape != init_latent.shape:
            raise ValueError(f"noise {tuple(noise.shape)} must have init_latent's shape {tuple(init_latent.shape)}")
        if sigmas.ndim != 1 or sigmas.shape[0] < 2:
            raise ValueError("sigmas must be the 1-D schedule the sampler runs (n + 1 values ending in 0)")
        if float(change_map.min()) < 0 or float(change_map.max()) > 1:
            raise ValueError("change_map values must lie in [0, 1]")
        self.inner = inner
        self.init_latent = init_latent
        self.change_map = change_map
        self.sigmas = sigmas
        self.noise = noise
        self.steps = sigmas.shape[0] - 1
        self.keep = differential_masks(change_map, self.steps)
        self.add_noise = add_noise

    def __repr__(self) -> str:
        return (f"DifferentialBlend(init_latent={tuple(self.init_latent.shape)}, "
                f"change_map={tuple(self.change_map.shape)}, steps={self.steps})")

    def step_index(self, sigma: torch.Tensor) -> int:
        """The step a call at ``sigma`` belongs to: how many schedule sigmas lie strictly above it."""
        above = int((self.sigmas[:-1].to(sigma.device) > sigma).sum())
        return min(above, self.steps - 1)

    def __call__(self, x: torch.Tensor, sigma: torch.Tensor, **kwargs) -> torch.Tensor:
        sigma = _sigma_batch(sigma, x)
        keep = self.keep[self.step_index(sigma[0])].to(x.device)
        if self.add_noise is None:
            noised = self.init_latent.to(x) + self.noise.to(x) * _append_dims(sigma, x.ndim).to(x)
        else:
            noised = self.add_noise(self.init_latent.to(x), self.noise.to(x), sigma)
        x.copy_(torch.where(keep, noised, x))
        return self.inner(x, sigma, **kwargs)
