"""Tiny random LaMa generator files in ControlNetLama.pth's flat layout, so `clean` runs without downloads."""
from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from ..files import atomic_path
from .model import TINY_LAMA, FFCResNetGenerator, LamaConfig


@torch.no_grad()
def randomize_lama(model: nn.Module, seed: int = 0) -> nn.Module:
    """Overwrite every tensor deterministically: conv weights ~ N(0, 1/fan_in), biases 0.1 N, BatchNorm affines
    1 + 0.1 N / 0.1 N and running statistics mean 0.1 N, var U(0.5, 1.5) (nothing left at a fresh 0 or 1)."""
    g = torch.Generator().manual_seed(seed)
    for module in model.modules():
        for p_name, t in list(module.named_parameters(recurse=False)) + list(module.named_buffers(recurse=False)):
            noise = torch.randn(t.shape, generator=g)
            if isinstance(module, nn.modules.batchnorm._BatchNorm):
                value = {"weight": 1 + 0.1 * noise, "bias": 0.1 * noise, "running_mean": 0.1 * noise,
                         "running_var": 0.5 + torch.rand(t.shape, generator=g),
                         "num_batches_tracked": torch.tensor(1000)}[p_name]
            elif p_name == "weight":
                fan_in = t.shape[0] * t[0, 0].numel() if isinstance(module, nn.ConvTranspose2d) else t[0].numel()
                value = noise / fan_in ** 0.5
            else:
                value = 0.1 * noise
            t.copy_(value.to(t.dtype))
    return model


def tiny_lama_state_dict(seed: int = 0, config: LamaConfig = TINY_LAMA) -> dict[str, torch.Tensor]:
    model = randomize_lama(FFCResNetGenerator(config), seed)
    return {k: v.detach().contiguous() for k, v in model.state_dict().items()}


def make_tiny_lama_file(path: str | Path, seed: int = 0, config: LamaConfig = TINY_LAMA) -> Path:
    """Write a tiny random LaMa generator (`.safetensors`, or `.pth` as a flat state dict) with big-lama's keys."""
    path = Path(path)
    sd = tiny_lama_state_dict(seed, config)
    with atomic_path(path) as tmp:
        if path.suffix == ".safetensors":
            from safetensors.torch import save_file

            save_file(sd, str(tmp), metadata={"format": "pt"})
        elif path.suffix in (".pth", ".pt", ".ckpt"):
            torch.save(sd, tmp)
        else:
            raise ValueError(f"{path}: tiny LaMa files are written as .safetensors or .pth")
    return path
