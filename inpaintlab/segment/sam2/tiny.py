"""Tiny random-weight SAM 2 / 2.1 files in the real layout, so the segmentation paths run without downloads."""
from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from ...files import atomic_path
from .config import Sam2Config
from .model import SAM2Model, build_sam2_from_config

_NORM_SUFFIXES = ("norm1.weight", "norm2.weight", "norm3.weight", "norm4.weight", "norm_final_attn.weight")


@torch.no_grad()
def randomize_sam2(model: nn.Module, seed: int = 0) -> nn.Module:
    """Overwrite every tensor deterministically: weights ~ N(0, 1/fan_in), biases and embeddings small, norm scales
    1 + 0.1 N, norm shifts 0.1 N. Nothing is left at the zero / one a fresh model starts from."""
    g = torch.Generator().manual_seed(seed)
    for name, t in model.state_dict(keep_vars=True).items():
        noise = torch.randn(t.shape, generator=g, dtype=torch.float32)
        owner = model.get_submodule(name.rsplit(".", 1)[0]) if "." in name else model
        if isinstance(owner, (nn.LayerNorm,)) or type(owner).__name__ == "LayerNorm2d" or name.endswith(
                _NORM_SUFFIXES):
            value = (1 + 0.1 * noise) if name.endswith("weight") else 0.1 * noise
        elif name.endswith("positional_encoding_gaussian_matrix"):
            value = noise
        elif t.dim() >= 2 and name.endswith("weight") and not isinstance(owner, nn.Embedding):
            fan_in = t[0].numel() if not isinstance(owner, nn.ConvTranspose2d) else t.shape[0] * t[0, 0].numel()
            value = noise / fan_in ** 0.5
        else:  # biases, embeddings, position embeddings, no_mem_embed, layer-scale gammas
            value = 0.1 * noise
        t.copy_(value.to(t.dtype))
    return model


def tiny_sam2_state_dict(seed: int = 0, family: str = "sam2", size: str = "tiny") -> dict[str, torch.Tensor]:
    """The flat state dict of a randomised SAM 2 model (default: the `tiny` test size)."""
    model = randomize_sam2(build_sam2_from_config(Sam2Config.named(size, family)), seed)
    return {k: v.detach().contiguous() for k, v in model.state_dict().items()}


def make_tiny_sam2_file(path: str | Path, seed: int = 0, family: str = "sam2") -> Path:
    """Write a tiny random SAM 2 (or `family="sam2.1"`) `.safetensors` file with the official flat keys."""
    from safetensors.torch import save_file

    path = Path(path)
    if path.suffix != ".safetensors":
        raise ValueError(f"{path}: tiny SAM 2 files are written as .safetensors")
    sd = tiny_sam2_state_dict(seed, family)
    with atomic_path(path) as tmp:
        save_file(sd, str(tmp), metadata={"format": "pt"})
    return path


__all__ = ["SAM2Model", "make_tiny_sam2_file", "randomize_sam2", "tiny_sam2_state_dict"]
