"""nn.Module wrappers around the fused ops; parameter names match torch.nn so checkpoint keys never change."""
from __future__ import annotations

import torch
from torch import nn

from .group_norm import group_norm
from .dispatch import check_backend


class GroupNorm(nn.Module):
    """GroupNorm (statistics in fp32, like ldm's GroupNorm32) with an optional fused SiLU.

    With `silu=True` the module replaces ldm's `GroupNorm, SiLU` pair; the Sequential keeps an Identity where the
    SiLU stood so that the following conv keeps its checkpoint index.
    """

    def __init__(self, num_groups: int, num_channels: int, eps: float, *, silu: bool = False, kernels: str = "torch"):
        super().__init__()
        if num_channels % num_groups:
            raise ValueError(f"GroupNorm: {num_channels} channels do not split into {num_groups} groups")
        self.num_groups, self.num_channels, self.eps, self.silu = num_groups, num_channels, eps, silu
        self.kernels = check_backend(kernels)
        self.weight = nn.Parameter(torch.ones(num_channels))
        self.bias = nn.Parameter(torch.zeros(num_channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return group_norm(x, self.num_groups, self.weight, self.bias, self.eps, silu=self.silu, backend=self.kernels)

    def extra_repr(self) -> str:
        return f"{self.num_groups}, {self.num_channels}, eps={self.eps}, silu={self.silu}, kernels={self.kernels!r}"
