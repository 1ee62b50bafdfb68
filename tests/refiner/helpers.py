"""Shared pieces of the refiner tests: a UNet spy and the float64 switch rule."""
from __future__ import annotations

import contextlib

import torch


class Spy(torch.nn.Module):
    """Wraps a UNet and records, per call, (timestep of the first row, input channels, latent height)."""

    def __init__(self, unet: torch.nn.Module) -> None:
        super().__init__()
        self.inner, self.calls, self.inputs = unet, [], []
        self.config, self.kernels = unet.config, getattr(unet, "kernels", "torch")

    def forward(self, x, t, context=None, y=None, **kw):
        self.calls.append((float(t.reshape(-1)[0]), x.shape[1], x.shape[2]))
        self.inputs.append(x)
        return self.inner(x, t, context, y, **kw) if y is not None else self.inner(x, t, context, **kw)


@contextlib.contextmanager
def spying(*pipes):
    spies = [Spy(p.unet) for p in pipes]
    for pipe, spy in zip(pipes, spies):
        pipe.unet = spy
    try:
        yield spies
    finally:
        for pipe, spy in zip(pipes, spies):
            pipe.unet = spy.inner


def ratio64(sigma: torch.Tensor, table: torch.Tensor) -> float:
    """A1111's completed ratio by timestep, re-derived in float64: (999 - argmin|table - max sigma|) / 1000."""
    top = float(torch.as_tensor(sigma).max())
    t = int(torch.argmin((table.double() - top).abs()))
    return (999 - t) / 1000
