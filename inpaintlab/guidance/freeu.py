"""FreeU as the sd-webui-freeu extension applies it (v1 and v2): scale the decoder's backbone features, filter the
skip features in Fourier space, at every decoder concat ``cat([h, skip], dim=1)``.

The stage is picked by the channel count of ``h`` (1280 → stage 1, 640 → stage 2, 320 → stage 3 in SD1/SD2/SDXL), not
by the up-block index, so SD1's stage 1 covers output blocks 0–6 and SDXL's 0–3. Here the channel counts are the
model's distinct level widths, largest first (the same three numbers for every real SD model; tiny test models
get their own). The schedule counts denoiser calls, not sampler steps.

`FreeUSettings.hook(unet)` installs the filter on a :class:`~inpaintlab.unet.UNetModel` (forward pre-hooks on its
output blocks, so a ControlNet residual already added to the skip is filtered too); `freeu_concat` is the whole
per-concat computation as a function.
"""
from __future__ import annotations

import math

import torch
from torch import nn

from .freeu_settings import FreeUSettings, FreeUStage  # noqa: F401 (the settings, torch-free)

def ratio_to_region(width: float, offset: float, n: int) -> tuple[int, int, bool]:
    """The channel range ``[start, end]`` (inclusive end) scaled by the backbone factor, and whether it is inverted
    (the complement is scaled). Python's round (half to even), as the extension."""
    if width < 0:
        offset += width
        width = -width
    width = min(width, 1)
    if offset < 0:
        offset = 1 + offset - int(offset)
    offset = math.fmod(offset, 1.0)
    if width + offset <= 1:
        return round(offset * n), round((width + offset) * n), False
    return round((width + offset - 1) * n), round(offset * n), True


def channel_mask(width: float, offset: float, n: int) -> torch.Tensor:
    """Bool [n]: the channels the backbone factor scales."""
    start, end, inverted = ratio_to_region(width, offset, n)
    c = torch.arange(n)
    return ((c >= start) & (c <= end)) ^ inverted


def backbone_scale(h: torch.Tensor, factor: float, version: str = "1") -> torch.Tensor | float:
    """v1: the factor. v2: ``1 + (factor − 1)·norm`` with ``norm`` the channel mean of ``h`` min-max normalised per
    sample over H×W ([B, 1, H, W]; NaN for a constant map, as the extension)."""
    if version == "1":
        return factor
    mean = h.mean(1, keepdim=True)
    flat = mean.view(h.shape[0], -1)
    hi = flat.max(dim=-1, keepdim=True).values[:, :, None, None]
    lo = flat.min(dim=-1, keepdim=True).values[:, :, None, None]
    return 1 + (factor - 1) * ((mean - lo) / (hi - lo))


def filter_skip(skip: torch.Tensor, cutoff: float, scale: float, scale_high: float) -> torch.Tensor:
    """Multiply the centred spectrum of ``skip`` by ``scale`` inside a box of half-size ``max(1, floor(H/2·cutoff))``
    × ``max(1, floor(W/2·cutoff))`` around the DC term and by ``scale_high`` outside (float32 FFT, on the CPU when
    the device has no complex support). Unchanged when both factors are 1."""
    if scale == 1 and scale_high == 1:
        return skip
    device = skip.device if skip.device.type not in ("mps", "privateuseone") else torch.device("cpu")
    freq = torch.fft.fftshift(torch.fft.fftn(skip.to(device).float(), dim=(-2, -1)), dim=(-2, -1))
    _, _, h, w = freq.shape
    mask = torch.full(freq.shape, float(scale_high), device=device)
    crow, ccol = h // 2, w // 2
    tr, tc = max(1, math.floor(crow * cutoff)), max(1, math.floor(ccol * cutoff))
    mask[..., crow - tr:crow + tr, ccol - tc:ccol + tc] = scale
    freq = torch.fft.ifftshift(freq * mask, dim=(-2, -1))
    return torch.fft.ifftn(freq, dim=(-2, -1)).real.to(device=skip.device, dtype=skip.dtype)


def _lerp(a: float, b: float, r: float) -> float:
    return (1 - r) * a + r * b


def to_denoising_step(value: float | int, steps: int) -> int:
    """A float is a fraction of ``steps`` (truncated), an int an absolute step (the extension's XYZ values)."""
    return int(value * steps) if isinstance(value, float) else int(value)


def schedule_ratio(call: int, start: float | int, stop: float | int, smoothness: float, steps: int) -> float:
    """The strength (0–1) at denoiser call ``call`` (from 0; it counts calls, so second-order samplers run through
    the window about twice as fast); ``steps`` is A1111's ``sampling_steps`` (img2img: ``t_enc + 1``)."""
    start_step, stop_step = to_denoising_step(start, steps), to_denoising_step(stop, steps)
    if start_step == stop_step:
        smooth = 0.0
    elif call < start_step:
        smooth = min(1.0, max(0.0, call / start_step))
    else:
        smooth = min(1.0, max(0.0, 1 + (call - start_step) / (start_step - stop_step)))
    flat = 1.0 if start_step <= call < stop_step else 0.0
    return _lerp(flat, smooth, smoothness)


def freeu_concat(h: torch.Tensor, skip: torch.Tensor, stage: FreeUStage, ratio: float,
                 version: str = "1") -> tuple[torch.Tensor, torch.Tensor]:
    """One decoder concat's ``(h, skip)`` after FreeU at strength ``ratio`` (the inputs are not modified)."""
    if ratio == 0:
        return h, skip
    mask = channel_mask(stage.backbone_width, stage.backbone_offset, h.shape[1]).to(h.device)
    scale = backbone_scale(h, _lerp(1, stage.backbone_factor, ratio), version)
    maskf = mask.to(h.dtype)[:, None, None]
    h = h * (maskf * scale + (1 - maskf))
    skip = filter_skip(skip, stage.skip_cutoff, _lerp(1, stage.skip_factor, ratio),
                       _lerp(1, stage.skip_high_end_factor, ratio))
    return h, skip


def stage_widths(unet: nn.Module) -> tuple[int, ...]:
    """The model's distinct level widths, largest first: the ``h`` channel counts of stages 1, 2, 3."""
    mc = unet.config.model_channels
    return tuple(sorted({mc * m for m in unet.config.channel_mult}, reverse=True))


class FreeUHook:
    """FreeU installed on a UNet: forward pre-hooks on the output blocks rewrite ``cat([h, skip])``."""

    def __init__(self, unet: nn.Module, settings: FreeUSettings, steps: int) -> None:
        self.settings, self.steps, self.calls = settings, steps, 0
        stages = {w: i for i, w in enumerate(stage_widths(unet))}
        self._handles = []
        h_channels = unet.middle_block[-1].out_channels
        for block in unet.output_blocks:
            stage = stages.get(h_channels)
            if stage is not None:
                self._handles.append(block.register_forward_pre_hook(self._pre_hook(h_channels, stage)))
            h_channels = block[0].out_channels

    def _pre_hook(self, h_channels: int, stage: int):
        def hook(module, args):
            ratio = self.ratio()
            if ratio == 0:
                return None
            x = args[0]
            h, skip = freeu_concat(x[:, :h_channels], x[:, h_channels:], self.settings.stage(stage), ratio,
                                   self.settings.version)
            return (torch.cat([h, skip], dim=1), *args[1:])
        return hook

    def ratio(self) -> float:
        s = self.settings
        return schedule_ratio(self.calls, s.start, s.stop, s.smoothness, self.steps)

    def step(self) -> None:
        """Count one denoiser call (the extension's `cfg_after_cfg` counter)."""
        self.calls += 1

    def remove(self) -> None:
        for handle in self._handles:
            handle.remove()
        self._handles.clear()
