"""Fused inference ops with a plain-torch reference beside each Triton kernel.

    attention(q, k, v, *, scale=None, backend="auto")
    group_norm(x, num_groups, weight, bias, eps, *, silu=False, backend="auto")

Backends: "torch", "triton", "auto" (Triton on CUDA when available, torch otherwise). The Triton modules are
imported on first use, so TRITON_INTERPRET can still be set after `import inpaintlab`.
"""
from __future__ import annotations

import torch

from .dispatch import BACKENDS, available, check_backend, interpreting, resolve


def attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, *, scale: float | None = None,
              backend: str = "auto") -> torch.Tensor:
    """softmax(q·kᵀ·scale)·v for q [B,H,N,D], k/v [B,H,M,D]; scale defaults to D**-0.5."""
    from . import attention as _attention

    return _attention.attention(q, k, v, scale=scale, backend=backend)


def group_norm(x: torch.Tensor, num_groups: int, weight: torch.Tensor | None, bias: torch.Tensor | None,
               eps: float, *, silu: bool = False, backend: str = "auto") -> torch.Tensor:
    """GroupNorm over [B,C,*] with statistics in fp32, optionally followed by SiLU."""
    from . import group_norm as _group_norm

    return _group_norm.group_norm(x, num_groups, weight, bias, eps, silu=silu, backend=backend)


from .modules import GroupNorm  # noqa: E402  (needs the functions above)

__all__ = ["BACKENDS", "GroupNorm", "attention", "available", "check_backend", "group_norm", "interpreting", "resolve"]
