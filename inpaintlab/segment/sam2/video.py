"""SAM 2's video-only tensors, held so that a checkpoint loads strictly and saves back unchanged.

The image path never reads them. Their names and shapes are the same in every Hiera size: the memory attention
(4 RoPE layers, 256 wide, cross-attending to 64-wide memories), the memory encoder (mask downsampler, pixel projection,
two ConvNeXt-style fuser blocks, output projection), the object-pointer projection and a few embeddings; SAM 2.1 adds
`obj_ptr_tpos_proj` and `no_obj_embed_spatial`. They are declared here as plain parameters at their checkpoint paths.
"""
from __future__ import annotations

import torch
from torch import nn

from .config import D_MODEL

MEM_DIM = 64
NUM_MASKMEM = 7
MEMORY_LAYERS = 4
FUSER_LAYERS = 2
FFN_DIM = 2048


def _linear(name: str, n_in: int, n_out: int) -> list[tuple[str, tuple[int, ...]]]:
    return [(f"{name}.weight", (n_out, n_in)), (f"{name}.bias", (n_out,))]


def _conv(name: str, n_in: int, n_out: int, k: int) -> list[tuple[str, tuple[int, ...]]]:
    return [(f"{name}.weight", (n_out, n_in, k, k)), (f"{name}.bias", (n_out,))]


def _norm(name: str, n: int) -> list[tuple[str, tuple[int, ...]]]:
    return [(f"{name}.weight", (n,)), (f"{name}.bias", (n,))]


def video_tensor_shapes(family: str) -> list[tuple[str, tuple[int, ...]]]:
    """(key, shape) of every video-only tensor of a SAM 2 ("sam2") or SAM 2.1 ("sam2.1") checkpoint."""
    d, m = D_MODEL, MEM_DIM
    out: list[tuple[str, tuple[int, ...]]] = [
        ("maskmem_tpos_enc", (NUM_MASKMEM, 1, 1, m)), ("no_mem_pos_enc", (1, 1, d)), ("no_obj_ptr", (1, d))]
    if family == "sam2.1":
        out.append(("no_obj_embed_spatial", (1, m)))
    out += _conv("mask_downsample", 1, 1, 4)
    for i in range(MEMORY_LAYERS):
        p = f"memory_attention.layers.{i}."
        for proj in ("q_proj", "k_proj", "v_proj", "out_proj"):
            out += _linear(p + "self_attn." + proj, d, d)
        for proj in ("q_proj", "k_proj", "v_proj", "out_proj"):  # keys and values come from the 64-wide memories
            out += _linear(p + "cross_attn_image." + proj, m if proj in ("k_proj", "v_proj") else d, d)
        out += _linear(p + "linear1", d, FFN_DIM) + _linear(p + "linear2", FFN_DIM, d)
        for j in (1, 2, 3):
            out += _norm(p + f"norm{j}", d)
    out += _norm("memory_attention.norm", d)
    # Mask downsampler: four stride-2 3x3 convs 1 -> 4 -> 16 -> 64 -> 256, each + LayerNorm2d + GELU, then a 1x1.
    chans = [1, 4, 16, 64, 256]
    for j in range(4):
        out += _conv(f"memory_encoder.mask_downsampler.encoder.{3 * j}", chans[j], chans[j + 1], 3)
        out += _norm(f"memory_encoder.mask_downsampler.encoder.{3 * j + 1}", chans[j + 1])
    out += _conv("memory_encoder.mask_downsampler.encoder.12", d, d, 1)
    out += _conv("memory_encoder.pix_feat_proj", d, d, 1)
    for j in range(FUSER_LAYERS):
        p = f"memory_encoder.fuser.layers.{j}."
        out += [(p + "gamma", (d,)), (p + "dwconv.weight", (d, 1, 7, 7)), (p + "dwconv.bias", (d,))]
        out += _norm(p + "norm", d) + _linear(p + "pwconv1", d, 4 * d) + _linear(p + "pwconv2", 4 * d, d)
    out += _conv("memory_encoder.out_proj", d, m, 1)
    for j in range(3):
        out += _linear(f"obj_ptr_proj.layers.{j}", d, d)
    if family == "sam2.1":
        out += _linear("obj_ptr_tpos_proj", d, m)
    return out


def _child(parent: nn.Module, name: str) -> nn.Module:
    if name not in parent._modules:
        parent.add_module(name, nn.Module())
    return parent._modules[name]


def add_video_tensors(model: nn.Module, family: str, device: torch.device | str | None = None) -> list[str]:
    """Register the video-only tensors on `model` at their key paths (uninitialised); return their keys."""
    keys = []
    for key, shape in video_tensor_shapes(family):
        *path, leaf = key.split(".")
        owner = model
        for part in path:
            owner = _child(owner, part)
        owner.register_parameter(leaf, nn.Parameter(torch.empty(shape, device=device), requires_grad=False))
        keys.append(key)
    return keys
