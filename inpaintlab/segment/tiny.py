"""A tiny random-weight SAM v1 file (256² input, ViT of width 64, the released prompt encoder and decoder) so every
segmentation command runs without a download. Random weights give blobs, not objects."""
from __future__ import annotations

import math
from pathlib import Path

import torch

from .model import Sam, SamConfig

TINY_SAM = SamConfig("vit", False, img_size=256, embed_dim=64, depth=3, num_heads=2, window_size=5,
                     global_attn_indexes=(1,))


@torch.no_grad()
def build_tiny_sam(seed: int = 0) -> Sam:
    """Deterministic weights from `seed`. The IoU head is biased towards 0.95 and the mask logits scaled up, so the
    generator's default filters (0.88 IoU, 0.95 stability) keep some masks."""
    with torch.random.fork_rng(devices=[]):
        model = Sam(TINY_SAM, kernels="torch")
    g = torch.Generator().manual_seed(seed)
    for name, p in model.named_parameters():
        noise = torch.randn(p.shape, generator=g)
        if p.ndim == 1 and name.endswith("weight"):
            p.copy_(1 + 0.1 * noise)
        elif p.ndim == 1:
            p.copy_(0.05 * noise)
        else:
            p.copy_(noise / math.sqrt(math.prod(p.shape[1:])))
    gauss = model.prompt_encoder.pe_layer.positional_encoding_gaussian_matrix  # a buffer, drawn at construction
    gauss.copy_(torch.randn(gauss.shape, generator=g))
    head = model.mask_decoder.iou_prediction_head.layers[-1]
    head.weight.mul_(0.01)
    head.bias.fill_(0.95)
    for mlp in model.mask_decoder.output_hypernetworks_mlps:
        mlp.layers[-1].weight.mul_(20)
    return model.eval().requires_grad_(False)


def make_tiny_sam(path: str | Path, seed: int = 0) -> Path:
    """Write the tiny SAM as `.safetensors` with the official key names (written atomically)."""
    from safetensors.torch import save_file

    from ..files import atomic_path

    path = Path(path)
    if path.suffix != ".safetensors":
        raise ValueError(f"{path}: the tiny SAM is written as .safetensors")
    sd = {k: v.contiguous() for k, v in build_tiny_sam(seed).state_dict().items()}
    with atomic_path(path) as tmp:
        save_file(sd, str(tmp), metadata={"format": "pt"})
    return path
