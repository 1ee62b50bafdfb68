"""SAM 2 / SAM 2.1 configurations and their detection from a state dict's keys and shapes.

The released checkpoints (sam2==1.1.0's `configs/sam2*/sam2*_hiera_{t,s,b+,l}.yaml`) differ only in the Hiera trunk;
the prompt encoder, mask decoder and the video-only modules are the same 256-wide networks in every size. SAM 2.1 adds
two video-only tensors (`obj_ptr_tpos_proj`, `no_obj_embed_spatial`) and changes nothing on the image path.

Heads, window sizes and global-attention blocks leave no trace in the tensor shapes, so a trunk is recognised by what
the shapes do show (embed dim, blocks per stage, background position-embedding size) and the rest comes from the
table. `tiny` is a test size of this library (`make_tiny_sam2_file`), not a released one.
"""
from __future__ import annotations

import dataclasses
import re
from typing import Iterable, Mapping

import torch

try:  # one exception type for all of inpaintlab.segment where its shared module is present
    from ..common import SegmentError as _ErrorBase
except ImportError:  # pragma: no cover - the SAM 2 package on its own
    _ErrorBase = ValueError

IMAGE_SIZE = 1024  # SAM 2's predictor hard-codes its feature sizes (256/128/64) for a 1024 input
D_MODEL = 256  # prompt / decoder width (the neck's d_model) in every size


class Sam2Error(_ErrorBase):
    """A state dict or input that SAM 2 cannot use; the message names the problem in one line."""


@dataclasses.dataclass(frozen=True)
class HieraConfig:
    """Hiera trunk hyper-parameters, as in sam2's `Hiera.__init__` (q_pool 3, q_stride 2, dim/head multipliers 2)."""

    embed_dim: int = 96
    num_heads: int = 1
    stages: tuple[int, ...] = (1, 2, 7, 2)
    global_att_blocks: tuple[int, ...] = (5, 7, 9)
    window_spec: tuple[int, ...] = (8, 4, 14, 7)
    window_pos_embed_bkg_spatial_size: tuple[int, int] = (7, 7)

    @property
    def channels(self) -> tuple[int, ...]:
        """Output channels per stage, finest first (E, 2E, 4E, 8E)."""
        return tuple(self.embed_dim * 2 ** i for i in range(len(self.stages)))


HIERA_SIZES: dict[str, HieraConfig] = {
    "t": HieraConfig(96, 1, (1, 2, 7, 2), (5, 7, 9), (8, 4, 14, 7), (7, 7)),
    "s": HieraConfig(96, 1, (1, 2, 11, 2), (7, 10, 13), (8, 4, 14, 7), (7, 7)),
    "b+": HieraConfig(112, 2, (2, 3, 16, 3), (12, 16, 20), (8, 4, 14, 7), (14, 14)),
    "l": HieraConfig(144, 2, (2, 6, 36, 4), (23, 33, 43), (8, 4, 16, 8), (7, 7)),
    # Test size with every code path of the real ones at a fraction of the cost: windowed and global blocks,
    # q-pooling at each stage change, windows that do not divide the map (6 at 64x64, pooled to 3 at 32x32).
    "tiny": HieraConfig(16, 1, (1, 1, 2, 1), (3,), (8, 4, 6, 4), (7, 7)),
}


@dataclasses.dataclass(frozen=True)
class Sam2Config:
    """A SAM 2 model: its family ("sam2" or "sam2.1"), Hiera size name and trunk."""

    family: str = "sam2"
    size: str = "t"
    hiera: HieraConfig = HIERA_SIZES["t"]

    @classmethod
    def named(cls, size: str, family: str = "sam2") -> "Sam2Config":
        if size not in HIERA_SIZES:
            raise Sam2Error(f"unknown SAM 2 size {size!r}; expected one of {', '.join(HIERA_SIZES)}")
        if family not in ("sam2", "sam2.1"):
            raise Sam2Error(f"unknown SAM 2 family {family!r}; expected 'sam2' or 'sam2.1'")
        return cls(family, size, HIERA_SIZES[size])


TRUNK = "image_encoder.trunk."
SAM21_KEYS = ("obj_ptr_tpos_proj.weight", "no_obj_embed_spatial")
_BLOCK = re.compile(r"^image_encoder\.trunk\.blocks\.(\d+)\.")


def unwrap(sd: Mapping[str, torch.Tensor]) -> Mapping[str, torch.Tensor]:
    """The official `.pt` files hold {"model": state_dict}; a flat dict is returned as it is."""
    inner = sd.get("model") if isinstance(sd, Mapping) else None
    return inner if isinstance(inner, Mapping) else sd


def is_sam2(keys: Iterable[str] | Mapping[str, torch.Tensor]) -> bool:
    """Whether these keys (or a state dict, `{"model": ...}` unwrapped) are a SAM 2 / 2.1 checkpoint's."""
    if isinstance(keys, Mapping):
        keys = unwrap(keys)
    names = set(keys)
    return (TRUNK + "patch_embed.proj.weight" in names and "sam_mask_decoder.iou_token.weight" in names
            and "no_mem_embed" in names)


def detect_sam2(sd: Mapping[str, torch.Tensor]) -> Sam2Config:
    """The family (2 or 2.1) and Hiera size of a SAM 2 state dict, from its keys and shapes (see module docstring)."""
    sd = unwrap(sd)
    if not is_sam2(sd):
        raise Sam2Error("not a SAM 2 checkpoint: no image_encoder.trunk / sam_mask_decoder / no_mem_embed keys")
    family = "sam2.1" if all(k in sd for k in SAM21_KEYS) else "sam2"
    embed_dim = int(sd[TRUNK + "patch_embed.proj.weight"].shape[0])
    blocks = sorted({int(m.group(1)) for k in sd if (m := _BLOCK.match(k))})
    if blocks != list(range(len(blocks))):
        raise Sam2Error(f"SAM 2 trunk blocks are not numbered 0..n-1 (found {len(blocks)} blocks)")
    # A block with its own `proj` opens a new stage (it doubles the width).
    starts = [i for i in blocks if TRUNK + f"blocks.{i}.proj.weight" in sd]
    bounds = [0, *starts, len(blocks)]
    stages = tuple(b - a for a, b in zip(bounds, bounds[1:]))
    bkg = tuple(int(s) for s in sd[TRUNK + "pos_embed"].shape[2:]) if TRUNK + "pos_embed" in sd else ()
    for size, hiera in HIERA_SIZES.items():
        if (hiera.embed_dim, hiera.stages, hiera.window_pos_embed_bkg_spatial_size) == (embed_dim, stages, bkg):
            return Sam2Config(family, size, hiera)
    raise Sam2Error(f"SAM 2 config mismatch: a Hiera trunk with embed dim {embed_dim}, stages {list(stages)} and "
                    f"position embedding {list(bkg)} is none of the sizes {', '.join(HIERA_SIZES)}")
