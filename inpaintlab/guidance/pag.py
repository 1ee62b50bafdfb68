"""Perturbed-Attention Guidance (PAG) and Smoothed-Energy Guidance (SEG) as the sd-webui-incantations extension
applies them.

PAG: one extra UNet pass per denoiser call with the first middle-block self-attention
(``middle_block.1.transformer_blocks.0.attn1``, in SD1/SD2 and SDXL alike) replaced by its value projection
``to_v(x)`` — without ``to_out``, unlike the paper and diffusers — and the cond text on every row. The x0 outputs
combine as ``u + cfg·(c − u) + pag·(c − c_ptb)``; with SANF each latent element takes either the CFG term or the
PAG term, whichever has the larger channel-softmax of its 3×3-blurred magnitude.

SEG: no extra pass; the queries of every middle-block self-attention are blurred on the *uncond* half of the CFG
batch (A1111's rows are ``[cond…, uncond…]``), so CFG guides away from a smoothed-attention prediction. Blur sigma
above 10.5 replaces every query by its spatial mean.
"""
from __future__ import annotations

import math
from typing import Sequence

import torch
import torch.nn.functional as F
from torch import nn

# torchvision GaussianBlur(kernel_size=3, sigma=1) as the extension's SANF uses it: exp(−x²/2) at x = −1, 0, 1,
# normalised (float32, as torchvision builds it).
_SANF_X = torch.linspace(-1.0, 1.0, 3)


def _sanf_kernel(dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    pdf = torch.exp(-0.5 * _SANF_X.pow(2))
    k = pdf / pdf.sum()
    return (k[:, None] * k[None, :]).to(device=device, dtype=dtype)


def sanf_blur(x: torch.Tensor) -> torch.Tensor:
    """3×3 Gaussian (σ 1), reflect padding, per channel of [C, H, W] (torchvision's `gaussian_blur`)."""
    c = x.shape[0]
    kernel = _sanf_kernel(x.dtype, x.device).expand(c, 1, 3, 3)
    return F.conv2d(F.pad(x[None], (1, 1, 1, 1), mode="reflect"), kernel, groups=c)[0]


def pag_combine(cond: torch.Tensor, uncond: torch.Tensor, cond_ptb: torch.Tensor, cfg_scale: float,
                pag_scale: float, weights: Sequence[float] = (1.0,), sanf: bool = False,
                run_pag: bool = True) -> torch.Tensor:
    """The extension's combination of x0 predictions: ``uncond`` [B, C, H, W], ``cond`` [B·n, …] image-major,
    ``cond_ptb`` [B, …] (the perturbed pass's cond output per image). ``run_pag`` False (outside the step window, or
    scale 0) is A1111's CFG."""
    n = len(weights)
    run_pag = run_pag and pag_scale > 0
    denoised = uncond.clone()
    for i in range(uncond.shape[0]):
        for j, weight in enumerate(weights):
            c = cond[i * n + j]
            cfg_x = (c - uncond[i]) * (weight * cfg_scale)
            if not run_pag:
                denoised[i] += cfg_x
                continue
            pag_x = (c - cond_ptb[i]) * (weight * pag_scale)
            if not sanf:
                denoised[i] += cfg_x
                denoised[i] += pag_x
            else:
                sa = torch.softmax(sanf_blur(cfg_x.abs()), dim=0)
                sb = torch.softmax(sanf_blur(pag_x.abs()), dim=0)
                denoised[i] += torch.where(sa >= sb, cfg_x, pag_x)
    return denoised


def pag_module(unet: nn.Module) -> nn.Module:
    """The self-attention PAG perturbs: ``middle_block.1.transformer_blocks.0.attn1``."""
    return unet.middle_block[1].transformer_blocks[0].attn1


def seg_modules(unet: nn.Module) -> list[nn.Module]:
    """Every middle-block self-attention (SD1: 1, SDXL: 10)."""
    return [block.attn1 for block in unet.middle_block[1].transformer_blocks]


class PerturbedAttention:
    """Context manager: while active, the PAG attention returns ``to_v(x)`` (no ``to_out``)."""

    def __init__(self, unet: nn.Module) -> None:
        self.module = pag_module(unet)
        self._handle = None

    def __enter__(self) -> "PerturbedAttention":
        self._handle = self.module.register_forward_hook(lambda m, args, out: m.to_v(args[0]))
        return self

    def __exit__(self, *exc) -> None:
        self._handle.remove()


def seg_kernel_size(sigma: float) -> int:
    """The extension's odd kernel size for Gaussian sigma ``sigma`` (= 2**blur_sigma)."""
    k = math.ceil(6 * sigma)
    return k + 1 - k % 2


def seg_blur(q: torch.Tensor, blur_sigma: float, height: int, width: int) -> torch.Tensor:
    """Blur the second half of the query rows ``q`` [B, L, D] over the mid-block token grid
    ``H' = int(sqrt(L·height/width))``, ``W' = L // H'`` (height/width: the latent or image size). Returns a new
    tensor; the first half is untouched."""
    first, second = q.chunk(2, dim=0)
    b, L, d = second.shape
    gh = int(math.sqrt(L * height / width))
    gw = L // gh
    if gh * gw != L:
        raise ValueError(f"SEG cannot lay {L} mid-block tokens out as {gh}x{gw} for a {width}x{height} image")
    x = second.transpose(1, 2).reshape(b, d, gh, gw)
    s = 2 ** blur_sigma
    if blur_sigma > 10.5:
        x = x.mean(dim=(-2, -1), keepdim=True).expand_as(x)
    else:
        k = seg_kernel_size(s)
        k = min(k, gw - (gw % 2 - 1))
        half = (k - 1) * 0.5
        pdf = torch.exp(-0.5 * (torch.linspace(-half, half, steps=k) / s).pow(2))
        k1 = (pdf / pdf.sum()).to(device=x.device, dtype=x.dtype)
        kernel = torch.mm(k1[:, None], k1[None, :]).expand(d, 1, k, k)
        x = F.conv2d(F.pad(x, [k // 2] * 4, mode="reflect"), kernel, groups=d)
    return torch.cat([first, x.reshape(b, d, L).transpose(1, 2)])


class SmoothedEnergy:
    """Context manager: SEG's query blur on every middle-block self-attention of ``unet`` for inputs of the given
    latent size; ``enabled`` may be switched per call (the step window)."""

    def __init__(self, unet: nn.Module, blur_sigma: float, height: int, width: int) -> None:
        self.modules = seg_modules(unet)
        self.blur_sigma, self.height, self.width = blur_sigma, height, width
        self.enabled = True
        self._handles: list = []

    def _hook(self, module, args, q):
        # An odd row count (a cond-only call of one image) has no uncond half; the extension's chunk would fail there.
        if not self.enabled or self.blur_sigma == 0 or q.shape[0] % 2:
            return None
        return seg_blur(q, self.blur_sigma, self.height, self.width)

    def __enter__(self) -> "SmoothedEnergy":
        self._handles = [m.to_q.register_forward_hook(self._hook) for m in self.modules]
        return self

    def __exit__(self, *exc) -> None:
        for handle in self._handles:
            handle.remove()
        self._handles.clear()


def pag_active(step: int, start: int, end: int, scale: float) -> bool:
    """The extension's window test on A1111's lagging ``sampling_step``."""
    return scale > 0 and start <= step <= end


def seg_active(step: int, start: int, end: int, blur_sigma: float) -> bool:
    return blur_sigma != 0 and start <= step <= end
