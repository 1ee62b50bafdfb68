"""diffusers' UNet computing the way A1111 v1.10 does at sizes that are not multiples of the UNet's downscale.

A1111 replaces the `th` module of ldm's and sgm's openaimodel with a torch whose two-tensor `cat` first resizes the
first tensor to the second's height and width (nearest). diffusers instead hands each up block's upsampler the skip's
size (`upsample_size`), so it resizes *before* the upsampler's conv and from the unupsampled map: another result.
Giving diffusers' up blocks the same kind of `torch` and switching off its `upsample_size` forwarding
(`num_upsamplers = 0`) turns it into an independent implementation of A1111's rule, used here as the oracle.
"""
from __future__ import annotations

import importlib
from contextlib import contextmanager
from unittest import mock

import torch
import torch.nn.functional as F


class _ResizingCatTorch:
    """torch, except that cat([a, b], ...) resizes a to b's spatial size (nearest) when they differ."""

    def __getattr__(self, item):
        return getattr(torch, item)

    @staticmethod
    def cat(tensors, *args, **kwargs):
        if len(tensors) == 2:
            a, b = tensors
            if a.shape[-2:] != b.shape[-2:]:
                a = F.interpolate(a, size=b.shape[-2:], mode="nearest")
            tensors = (a, b)
        return torch.cat(tensors, *args, **kwargs)


@contextmanager
def a1111_sizes(unet: torch.nn.Module):
    """Within the block, diffusers' `unet` upsamples x2 and resizes at the skip concatenation, as A1111 does."""
    blocks = importlib.import_module("diffusers.models.unets.unet_2d_blocks")
    with mock.patch.object(blocks, "torch", _ResizingCatTorch()), mock.patch.object(unet, "num_upsamplers", 0):
        yield unet
