"""Read an SD1.x or SDXL ControlNet file and load it strictly into `ControlNet`: the original layout
(`control_v11p_sd15_inpaint.pth`, its `.safetensors` redistributions, sgm SDXL files, with or without `control_model.`)
or diffusers' single-file layout (`diffusion_pytorch_model.safetensors`, renamed by `diffusers_layout`), told apart
by the keys; Stability's control-LoRA files are merged with the UNet they run with (`control_lora`)."""
from __future__ import annotations

import logging
from collections.abc import Mapping
from pathlib import Path

import torch

from ..checkpoint import CheckpointError, load_component, read_state_dict, short_hash
from ..kernels import check_backend
from .control_lora import is_control_lora, merge_control_lora
from .diffusers_layout import DIFFUSERS_KEY, is_diffusers_layout, to_original
from .model import ControlNet, ControlNetConfig

log = logging.getLogger(__name__)

PREFIX = "control_model."  # the official files; sd-webui-controlnet strips it, so unprefixed files load too


def controlnet_state_dict(sd: Mapping[str, torch.Tensor], *, source: str = "ControlNet",
                          unet: torch.nn.Module | None = None) -> dict[str, torch.Tensor]:
    """The original-layout state dict of a ControlNet file: keys with `control_model.` stripped (sd-webui-controlnet's
    rule), a diffusers-format file renamed (`diffusers_layout.to_original`), a control-LoRA merged with `unet`
    (`control_lora.merge_control_lora`; CheckpointError without one); in an SD1 ControlNet (no `label_emb`)
    2-D `proj_in`/`proj_out` weights, as some converted files store them, become the [C,C,1,1] convs ldm uses (SDXL's
    are Linear). `sd` is not modified."""
    out = {}
    for key, value in sd.items():
        key = key[len(PREFIX):] if key.startswith(PREFIX) else key
        if key in out:
            raise CheckpointError(f"{source}: key {key!r} appears both with and without the {PREFIX!r} prefix")
        out[key] = value
    if is_diffusers_layout(out):
        try:
            out = to_original(out)
        except ValueError as e:
            raise CheckpointError(f"{source}: {e}") from e
    if is_control_lora(out):
        if unet is None:
            raise CheckpointError(f"{source}: a control-LoRA file holds differences from a UNet; load it with the "
                                  "checkpoint's UNet (unet=...) or through a pipeline")
        try:
            out = merge_control_lora(out, unet)
        except ValueError as e:
            raise CheckpointError(f"{source}: {e}") from e
    if "label_emb.0.0.weight" not in out:
        out = {k: v[:, :, None, None] if k.endswith((".proj_in.weight", ".proj_out.weight")) and v.ndim == 2 else v
               for k, v in out.items()}
    return out


def load_controlnet(source: str | Path | Mapping[str, torch.Tensor], *, device: str | torch.device = "cpu",
                    dtype: torch.dtype = torch.float32, kernels: str = "auto",
                    allow_pickle: bool = False, unet: torch.nn.Module | None = None) -> ControlNet:
    """Load a ControlNet from a `.safetensors` file (or, with `allow_pickle=True`, a `.pth`), or from a state dict,
    in the original or diffusers' single-file layout, or a control-LoRA file merged with `unet` (its SD UNet).

    The architecture (SD1 or SDXL) is inferred from the weights; every key and shape must match (strict). The
    returned module is in eval mode with gradients off and carries `name` and `hash` (A1111's `name [hash]` in the infotext).
    """
    check_backend(kernels)
    if isinstance(source, Mapping):
        raw, name, file_hash, where = source, "controlnet", None, "ControlNet state dict"
    else:
        path = Path(source)
        raw, name, file_hash, where = read_state_dict(path, allow_pickle=allow_pickle), path.stem, short_hash(path), str(path)
    sd = controlnet_state_dict(raw, source=where, unet=unet)
    try:
        config = ControlNetConfig.from_state_dict(sd)
    except (KeyError, ValueError) as e:
        if isinstance(e, CheckpointError):
            raise
        detail = str(e.args[0]) if e.args else repr(e)
        raise CheckpointError(f"{where}: not a supported ControlNet (SD1.x or SDXL): {detail}") from e
    with torch.device("meta"):
        model = ControlNet(config, kernels=kernels)
    model = model.to(dtype=dtype).to_empty(device=torch.device(device))
    if any(k.endswith(DIFFUSERS_KEY) for k in raw):  # errors name the renamed keys
        load_component(model, sd, f"{where} (diffusers layout, keys renamed)")
    else:
        load_component(model, sd, where, prefix=PREFIX if any(k.startswith(PREFIX) for k in raw) else "")
    model.eval().requires_grad_(False)
    model.name, model.hash = name, file_hash
    model.control_lora = is_control_lora({k.removeprefix(PREFIX): None for k in raw})
    return model
