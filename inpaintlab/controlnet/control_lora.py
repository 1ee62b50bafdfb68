"""Stability's control-LoRA files (`control-lora-canny-rank128.safetensors`, ...): a ControlNet whose encoder copy is
stored as low-rank differences from the Stable Diffusion UNet it runs with, merged into a full ControlNet state dict.

sd-webui-controlnet (`controlnet_lora.py`, `bind_control_lora`) builds the ControlNet with Linear/Conv layers that
hold no weight of their own, binds each to the UNet module at the same path (the currently loaded UNet), and at every
call uses

    W = W_unet[path] + (up.flatten(1) @ down.flatten(1)).reshape(W_unet.shape)        (when <path>.up/.down exist)
    W = W_unet[path]                                                                  (a bound layer without them)
    W = <path>.weight of the file                                                     (stored in full)

with the bias always from the file; norms, the hint encoder, the zero convs and `middle_block_out` are stored in full.
The key `lora_controlnet` (an empty tensor) marks the format. Here the same weights are merged once, in float32, into
an original-layout state dict that `ControlNet` loads strictly: a merged ControlNet belongs to the UNet it was merged
with (weights changed later, e.g. by a LoRA, are not seen).
"""
from __future__ import annotations

from collections.abc import Mapping

import torch
from torch import nn

LORA_KEY = "lora_controlnet"
# The ControlNet modules that have a namesake in the UNet (its encoder); everything else must be in the file.
BOUND_PREFIXES = ("time_embed.", "label_emb.", "input_blocks.", "middle_block.")


def is_control_lora(sd: Mapping[str, torch.Tensor]) -> bool:
    return LORA_KEY in sd


def bound_weights(unet: nn.Module) -> dict[str, torch.Tensor]:
    """`<path>.weight` of every Linear and Conv2d of the UNet's encoder: the layers a control-LoRA binds to."""
    return {f"{name}.weight": module.weight for name, module in unet.named_modules()
            if isinstance(module, (nn.Linear, nn.Conv2d)) and name.startswith(BOUND_PREFIXES)}


def merge_control_lora(sd: Mapping[str, torch.Tensor], unet: nn.Module) -> dict[str, torch.Tensor]:
    """The full original-layout ControlNet state dict of control-LoRA weights `sd` (any `control_model.` prefix
    stripped) bound to `unet`; merged tensors are float32 on the CPU, the file's own tensors are kept as stored.

    Raises ValueError naming the first key that does not fit: an up without a down, a path the UNet lacks, a shape
    that differs from the UNet's. `sd` and `unet` are not modified.
    """
    if not is_control_lora(sd):
        raise ValueError(f"not a control-LoRA file: no {LORA_KEY!r} key")
    ups = {k[: -len(".up")] for k in sd if k.endswith(".up")}
    downs = {k[: -len(".down")] for k in sd if k.endswith(".down")}
    if ups != downs:
        odd = sorted(ups ^ downs)[0]
        raise ValueError(f"control-LoRA: {odd!r} has {'an up' if odd in ups else 'a down'} matrix without its pair")
    base = bound_weights(unet)
    conv_in = base.get("input_blocks.0.0.weight")
    if conv_in is not None and conv_in.shape[1] != 4 and "input_blocks.0.0.weight" not in sd:
        raise ValueError(f"control-LoRA: its ControlNet takes 4 latent channels, this UNet's first conv "
                         f"{conv_in.shape[1]} (an inpainting UNet); use it with a 4-channel checkpoint")
    # Bound layers without a low-rank part use the UNet's weight as it is; the file's tensors come next.
    merged = {k: v.detach().to("cpu", torch.float32) for k, v in base.items()}
    for key, value in sd.items():
        if key != LORA_KEY and not key.endswith((".up", ".down")):
            merged[key] = value
    for path in sorted(ups):
        key = f"{path}.weight"
        if key in sd:
            raise ValueError(f"control-LoRA: {path!r} has both a full weight and up/down matrices")
        if key not in base:
            raise ValueError(f"control-LoRA: {path!r} has up/down matrices but the UNet has no Linear or Conv2d "
                             f"there (a LoRA for another UNet?)")
        up, down = sd[f"{path}.up"].float().flatten(1), sd[f"{path}.down"].float().flatten(1)
        w = merged[key]
        if up.shape[1] != down.shape[0] or up.shape[0] * down.shape[1] != w.numel() or up.shape[0] != w.shape[0]:
            raise ValueError(f"control-LoRA: {path!r} up {tuple(sd[path + '.up'].shape)} x down "
                             f"{tuple(sd[path + '.down'].shape)} does not fit the UNet's weight {tuple(w.shape)}")
        merged[key] = w + (up @ down).reshape(w.shape)
    return merged
