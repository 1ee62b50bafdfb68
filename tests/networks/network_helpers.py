"""Helpers for network tests: random LoRA-family files addressed by our own module names."""
from __future__ import annotations

import torch
from safetensors.torch import save_file


def kohya_key(component: str, dotted: str) -> str:
    """A file key for one of our modules: compvis-named `lora_unet_…` keys (A1111's lora_unet → diffusion_model
    fallback) for the UNet, `lora_te_text_model_…` for the text encoder."""
    return ("lora_unet_" if component == "unet" else "lora_te_text_model_") + dotted.replace(".", "_")


def random_lora(targets, seed: int, rank: int = 2, alpha: float = 1.0, scale: float = 0.2) -> dict:
    """{file key: tensor} of a LoRA over `targets` = [(component, dotted name, module)] (Linear or Conv2d)."""
    g = torch.Generator().manual_seed(seed)
    sd = {}
    for component, dotted, module in targets:
        key = kohya_key(component, dotted)
        w = module.weight
        sd[f"{key}.lora_down.weight"] = torch.randn(rank, *w.shape[1:], generator=g) * scale
        sd[f"{key}.lora_up.weight"] = torch.randn(w.shape[0], rank, *([1, 1] if w.ndim == 4 else []), generator=g) * scale
        sd[f"{key}.alpha"] = torch.tensor(alpha)
    return sd


def write(sd: dict, path, metadata: dict | None = None):
    save_file({k: v.contiguous() for k, v in sd.items()}, str(path), metadata=metadata)
    return path


def pick(unet, te, n_unet: int = 6, n_te: int = 3):
    """A spread of Linear/Conv2d layers (3x3 convs, 1x1 proj, attention, time embedding, text projections)."""
    out = []
    unet_layers = [(n, m) for n, m in unet.named_modules() if isinstance(m, (torch.nn.Linear, torch.nn.Conv2d))]
    te_layers = [(n, m) for n, m in te.named_modules()
                 if isinstance(m, torch.nn.Linear) and n.startswith("encoder.layers.")]
    step = max(1, len(unet_layers) // n_unet)
    out += [("unet", n, m) for n, m in unet_layers[::step][:n_unet]]
    out += [("text_encoder", n, m) for n, m in te_layers[:: max(1, len(te_layers) // n_te)][:n_te]]
    return out
