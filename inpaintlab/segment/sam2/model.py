"""The SAM 2 / 2.1 model for single images (sam2==1.1.0 `SAM2Base`'s image path) and its strict builder."""
from __future__ import annotations

from typing import Mapping

import torch
from torch import nn

from ...kernels import check_backend
from .config import D_MODEL, IMAGE_SIZE, Sam2Config, Sam2Error, detect_sam2, unwrap
from .decoder import MaskDecoder
from .heads import PromptEncoder
from .hiera import ImageEncoder
from .video import add_video_tensors

EMBED_SIZE = IMAGE_SIZE // 16  # 64: the stride-16 map the decoder attends to


class SAM2Model(nn.Module):
    """Image encoder, prompt encoder, mask decoder and `no_mem_embed`, plus the video-only tensors (unused here).

    Attributes: `family` ("sam2" / "sam2.1"), `size` (Hiera size name), `image_size` (1024), `mask_threshold` (0).
    """

    mask_threshold = 0.0

    def __init__(self, config: Sam2Config, kernels: str = "auto"):
        super().__init__()
        self.config = config
        self.family = config.family
        self.size = config.size
        self.image_size = IMAGE_SIZE
        self.image_encoder = ImageEncoder(config.hiera, kernels=kernels)
        self.sam_prompt_encoder = PromptEncoder(D_MODEL, (EMBED_SIZE, EMBED_SIZE), (IMAGE_SIZE, IMAGE_SIZE), 16)
        self.sam_mask_decoder = MaskDecoder(D_MODEL, kernels=kernels)
        # Added to the stride-16 features of a single image ("directly_add_no_mem_embed": no memory to attend to).
        self.no_mem_embed = nn.Parameter(torch.zeros(1, 1, D_MODEL))
        self.video_keys = add_video_tensors(self, config.family)

    @property
    def device(self) -> torch.device:
        return self.no_mem_embed.device

    @property
    def dtype(self) -> torch.dtype:
        return self.no_mem_embed.dtype

    def image_features(self, image: torch.Tensor) -> dict[str, torch.Tensor | list[torch.Tensor]]:
        """Normalised [B, 3, 1024, 1024] -> {"image_embed": [B,256,64,64], "high_res_feats": [[B,32,256,256],
        [B,64,128,128]], "backbone_fpn": the neck's three maps before the decoder's projections}."""
        fpn = self.image_encoder(image)
        dec = self.sam_mask_decoder
        high_res = [dec.conv_s0(fpn[0]), dec.conv_s1(fpn[1])]
        # The neck's top-down sum runs in fp32 (as sam2's); back to the model's dtype for the decoder.
        embed = (fpn[2] + self.no_mem_embed.reshape(1, -1, 1, 1)).to(self.dtype)
        return {"image_embed": embed, "high_res_feats": high_res, "backbone_fpn": fpn}


def build_sam2_from_config(config: Sam2Config, device: torch.device | str | None = None,
                           dtype: torch.dtype | None = None, kernels: str = "auto") -> SAM2Model:
    """An uninitialised model for `config` (`device="meta"` allocates nothing). kernels: the attention backend,
    "auto" | "torch" | "triton" (inpaintlab.kernels.attention)."""
    check_backend(kernels)
    with torch.device(device or "cpu"):
        model = SAM2Model(config, kernels)
    if dtype is not None:
        model.to(dtype)
    return model.eval().requires_grad_(False)


def build_sam2(state_dict: Mapping[str, torch.Tensor], *, device: torch.device | str | None = None,
               dtype: torch.dtype | None = None, kernels: str = "auto") -> SAM2Model:
    """Build the SAM 2 / 2.1 model a state dict describes (flat or the official `{"model": ...}`) and load it strictly.

    The family and Hiera size come from the keys and shapes (`detect_sam2`). Raises Sam2Error with one line naming the
    missing, unexpected or mis-shaped keys when the state dict does not match. The input is not modified. dtype:
    default the file's floating dtype; kernels: the attention backend ("auto" | "torch" | "triton").
    """
    sd = unwrap(state_dict)
    config = detect_sam2(sd)
    model = build_sam2_from_config(config, device="meta", kernels=kernels)
    expected = model.state_dict()
    missing = [k for k in expected if k not in sd]
    unexpected = [k for k in sd if k not in expected]
    shapes = [f"{k} {list(sd[k].shape)} != {list(v.shape)}" for k, v in expected.items()
              if k in sd and tuple(sd[k].shape) != tuple(v.shape)]
    if missing or unexpected or shapes:
        parts = [f"{len(missing)} missing ({_preview(missing)})" if missing else "",
                 f"{len(unexpected)} unexpected ({_preview(unexpected)})" if unexpected else "",
                 f"{len(shapes)} mis-shaped ({_preview(shapes)})" if shapes else ""]
        raise Sam2Error(f"SAM 2 config mismatch for {config.family} Hiera-{config.size}: "
                        + "; ".join(p for p in parts if p))
    model = model.to_empty(device=device or "cpu")
    target = dtype or next(v.dtype for v in sd.values() if v.is_floating_point())
    model.load_state_dict({k: v.to(model.device) for k, v in sd.items()}, strict=True, assign=False)
    return model.to(target).eval().requires_grad_(False)


def _preview(items: list[str], n: int = 3) -> str:
    return ", ".join(items[:n]) + (", ..." if len(items) > n else "")
