"""The SAM v1-style model (SAM, HQ-SAM, MobileSAM, HQ-SAM light) and its configuration read from a state dict."""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from .common import SegmentError
from .image_encoder import VIT_CONFIGS, ImageEncoderViT
from .mask_decoder import MaskDecoder, MaskDecoderHQ
from .prompt_encoder import PromptEncoder
from .tiny_vit import TinyViT

PIXEL_MEAN = (123.675, 116.28, 103.53)
PIXEL_STD = (58.395, 57.12, 57.375)


@dataclass(frozen=True)
class SamConfig:
    """encoder "vit" or "tiny_vit"; hq: an HQ-SAM decoder. ViT: embed_dim, depth, num_heads, window_size,
    global_attn_indexes, patch_size. TinyViT: embed_dims, depths, num_heads (per stage), window_sizes."""

    encoder: str
    hq: bool
    img_size: int = 1024
    embed_dim: int = 768
    depth: int = 12
    num_heads: int | tuple[int, ...] = 12
    window_size: int = 14
    global_attn_indexes: tuple[int, ...] = (2, 5, 8, 11)
    patch_size: int = 16
    embed_dims: tuple[int, ...] = ()
    depths: tuple[int, ...] = ()
    window_sizes: tuple[int, ...] = ()
    num_classes: int = 1000
    mask_in_chans: int = 16

    @property
    def family(self) -> str:
        if self.encoder == "tiny_vit":
            return "sam_hq" if self.hq else "mobile_sam"
        return "sam_hq" if self.hq else "sam"

    @property
    def variant(self) -> str:
        """vit_b / vit_l / vit_h / vit_t when the encoder is a released size, else "custom"."""
        if self.encoder == "tiny_vit":
            return "vit_t" if self.embed_dims == (64, 128, 160, 320) and self.depths == (2, 2, 6, 2) else "custom"
        for name, (dim, depth, heads, glob) in VIT_CONFIGS.items():
            if (dim, depth, heads, glob, self.img_size) == (self.embed_dim, self.depth, self.num_heads,
                                                            self.global_attn_indexes, 1024):
                return name
        return "custom"

    @classmethod
    def from_state_dict(cls, sd: Mapping[str, torch.Tensor]) -> SamConfig:
        """Read the architecture from the keys and shapes (KeyError / SegmentError when they do not describe one)."""
        hq = "mask_decoder.hf_token.weight" in sd
        mask_in = sd["prompt_encoder.mask_downscaling.3.weight"].shape[0]
        if "image_encoder.layers.0.blocks.0.conv1.c.weight" in sd:
            dims, depths, heads, windows = [], [], [], []
            i = 0
            while f"image_encoder.layers.{i}.blocks.0.local_conv.c.weight" in sd or i == 0:
                blocks = _count(sd, f"image_encoder.layers.{i}.blocks.")
                first = f"image_encoder.layers.{i}.blocks.0."
                if i == 0:
                    dims.append(sd[first + "conv1.c.weight"].shape[1])
                    heads.append(1)
                    windows.append(7)
                else:
                    dims.append(sd[first + "attn.qkv.weight"].shape[1])
                    biases = sd[first + "attn.attention_biases"]
                    heads.append(biases.shape[0])
                    windows.append(round(biases.shape[1] ** 0.5))
                depths.append(blocks)
                i += 1
            return cls("tiny_vit", hq, embed_dims=tuple(dims), depths=tuple(depths), num_heads=tuple(heads),
                       window_sizes=tuple(windows), num_classes=sd["image_encoder.head.weight"].shape[0],
                       mask_in_chans=mask_in)
        pos = sd["image_encoder.pos_embed"]
        grid, dim = pos.shape[1], pos.shape[3]
        patch = sd["image_encoder.patch_embed.proj.weight"].shape[-1]
        depth = _count(sd, "image_encoder.blocks.")
        head_dim = sd["image_encoder.blocks.0.attn.rel_pos_h"].shape[1]
        lengths = [sd[f"image_encoder.blocks.{i}.attn.rel_pos_h"].shape[0] for i in range(depth)]
        glob = tuple(i for i, n in enumerate(lengths) if n == 2 * grid - 1)
        windowed = [n for n in lengths if n != 2 * grid - 1]
        if len(set(windowed)) > 1:
            raise SegmentError(f"image encoder blocks have different window sizes {sorted(set(windowed))}")
        window = (windowed[0] + 1) // 2 if windowed else 14
        return cls("vit", hq, img_size=grid * patch, embed_dim=dim, depth=depth, num_heads=dim // head_dim,
                   window_size=window, global_attn_indexes=glob, patch_size=patch, mask_in_chans=mask_in)


def _count(sd: Mapping[str, torch.Tensor], prefix: str) -> int:
    ids = {int(k[len(prefix):].split(".", 1)[0]) for k in sd if k.startswith(prefix)}
    if ids != set(range(len(ids))):
        raise SegmentError(f"{prefix}N keys are not numbered 0..{len(ids) - 1}")
    return len(ids)


class Sam(nn.Module):
    """image_encoder / prompt_encoder / mask_decoder, named as in the checkpoint files. `family` is "sam",
    "sam_hq" or "mobile_sam"; `image_size` the encoder's square input (1024 for every released file)."""

    mask_threshold = 0.0

    def __init__(self, config: SamConfig, *, kernels: str = "torch"):
        super().__init__()
        self.config = config
        if config.encoder == "tiny_vit":
            self.image_encoder = TinyViT(config.img_size, config.embed_dims, config.depths, config.num_heads,
                                         config.window_sizes, config.num_classes)
            vit_dim = config.embed_dims[2]
        else:
            self.image_encoder = ImageEncoderViT(config.img_size, config.patch_size, config.embed_dim, config.depth,
                                                 config.num_heads, config.window_size, config.global_attn_indexes,
                                                 kernels=kernels)
            vit_dim = config.embed_dim
        grid = config.img_size // 16
        self.prompt_encoder = PromptEncoder(256, (grid, grid), (config.img_size, config.img_size),
                                            config.mask_in_chans)
        self.mask_decoder = MaskDecoderHQ(256, vit_dim, kernels=kernels) if config.hq else \
            MaskDecoder(256, kernels=kernels)
        self.register_buffer("pixel_mean", torch.tensor(PIXEL_MEAN).view(-1, 1, 1), persistent=False)
        self.register_buffer("pixel_std", torch.tensor(PIXEL_STD).view(-1, 1, 1), persistent=False)
        self.family, self.variant, self.image_size = config.family, config.variant, config.img_size

    def preprocess(self, x: torch.Tensor) -> torch.Tensor:
        """(x − mean) / std, then zero padding at the right/bottom to the square input (after normalising)."""
        x = (x - self.pixel_mean) / self.pixel_std
        h, w = x.shape[-2:]
        return F.pad(x, (0, self.image_size - w, 0, self.image_size - h))
