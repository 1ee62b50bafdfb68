"""Text conditioning ("cond") as the denoisers pass it, and the small helpers every denoiser layer shares.

A cond is a ``[B, L, C]`` tensor (SD1/SD2 cross-attention context) or, for SDXL, a dict
``{"crossattn": [B, L, C], "vector": [B, V]}`` as A1111/sgm pass it: the ADM vector (pooled text and size embedding)
travels with its prompt through CFG batching, so the cond and uncond rows each get their own.
"""
from __future__ import annotations

from typing import Callable, Dict, Sequence, Union

import torch

UNet = Callable[..., torch.Tensor]
Denoiser = Callable[..., torch.Tensor]
Cond = Union[torch.Tensor, Dict[str, torch.Tensor]]


def _check_cond(c: Cond, name: str) -> None:
    if isinstance(c, dict):
        ctx, vec = c.get("crossattn"), c.get("vector")
        if set(c) != {"crossattn", "vector"} or not isinstance(ctx, torch.Tensor) or ctx.ndim != 3 \
                or not isinstance(vec, torch.Tensor) or vec.ndim != 2 or vec.shape[0] != ctx.shape[0]:
            raise ValueError(f"{name} dict must be {{'crossattn': [B, L, C], 'vector': [B, V]}}, got "
                             f"{ {k: tuple(getattr(v, 'shape', ())) for k, v in c.items()} }")
    elif not isinstance(c, torch.Tensor) or c.ndim != 3:
        raise ValueError(f"{name} must be a [B, L, C] tensor, got {getattr(c, 'shape', type(c))}")


def _context(c: Cond) -> torch.Tensor:
    return c["crossattn"] if isinstance(c, dict) else c


def _map_cond(c: Cond, fn: Callable[[torch.Tensor], torch.Tensor]) -> Cond:
    return {k: fn(v) for k, v in c.items()} if isinstance(c, dict) else fn(c)


def cat_conds(conds: Sequence[Cond]) -> Cond:
    """Concatenate conds (tensors or SDXL dicts) along the batch."""
    if isinstance(conds[0], dict):
        return {k: torch.cat([c[k] for c in conds]) for k in conds[0]}
    return torch.cat(list(conds))


def _expand_cond(c: Cond, batch: int) -> Cond:
    return _map_cond(c, lambda v: v.expand(batch, *v.shape[1:]))


def _repeat_cond(c: Cond, n: int) -> Cond:
    return _map_cond(c, lambda v: v.repeat(n, *([1] * (v.ndim - 1))))


def _cond_rows(c: Cond, a: int, b: int) -> Cond:
    return _map_cond(c, lambda v: v[a:b])


def _sigma_batch(sigma: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    sigma = torch.as_tensor(sigma, device=x.device)
    if sigma.ndim == 0:
        sigma = sigma.expand(x.shape[0])
    if sigma.ndim != 1 or sigma.shape[0] != x.shape[0]:
        raise ValueError(f"sigma must have one value per batch item ({x.shape[0]}), got shape {tuple(sigma.shape)}")
    return sigma


def _append_dims(v: torch.Tensor, ndim: int) -> torch.Tensor:
    return v.reshape(v.shape + (1,) * (ndim - v.ndim))
