"""Fused inference ops with a plain-torch reference beside each Triton kernel.

    attention(q, k, v, *, scale=None, backend="auto")              q [B,H,N,D], k/v [B,H,M,D]
    group_norm(x, num_groups, weight, bias, eps, *, silu=False, backend="auto")

Backends: "torch", "triton", "auto" (Triton on CUDA when available, torch otherwise). Triton is optional: without it the
modules still import and the torch path works. Set TRITON_INTERPRET=1 before this package is imported to run the Triton
kernels on CPU tensors under Triton's interpreter.
"""
from .attention import attention, attention_ref
from .dispatch import BACKENDS, available, check_backend, interpreting, resolve
from .group_norm import group_norm, group_norm_ref
from .modules import GroupNorm

__all__ = ["BACKENDS", "GroupNorm", "attention", "attention_ref", "available", "check_backend", "group_norm",
           "group_norm_ref", "interpreting", "resolve"]
