"""Attention: torch reference and (to come) fused Triton flash-attention forward."""
from __future__ import annotations

import torch
import torch.nn.functional as F

from .dispatch import resolve


def attention_ref(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, scale: float | None = None) -> torch.Tensor:
    """Plain softmax attention, q [B,H,N,D], k/v [B,H,M,D] -> [B,H,N,D], computed in q's dtype by SDPA."""
    return F.scaled_dot_product_attention(q, k, v, scale=scale)


def attention(q, k, v, *, scale=None, backend="auto"):
    if resolve(backend, q) == "torch":
        return attention_ref(q, k, v, scale)
    raise NotImplementedError("Triton attention kernel not written yet")
