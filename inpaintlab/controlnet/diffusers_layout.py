"""diffusers' single-file ControlNet layout (`diffusion_pytorch_model.safetensors` of a diffusers ControlNetModel, SD1
or SDXL) renamed to the original ldm/sgm keys that `ControlNet` carries, as sd-webui-controlnet does on load
(`controlnet_diffusers.py`). The table is fixed; only the block numbers depend on the file (levels and res blocks per
level are read from its keys):

| diffusers                                        | original                                  |
|--------------------------------------------------|-------------------------------------------|
| `time_embedding.linear_1` / `linear_2`           | `time_embed.0` / `time_embed.2`           |
| `add_embedding.linear_1` / `linear_2` (SDXL)     | `label_emb.0.0` / `label_emb.0.2`         |
| `conv_in`                                        | `input_blocks.0.0`                        |
| `down_blocks.i.resnets.j`                        | `input_blocks.{(R+1)i+j+1}.0`             |
| `down_blocks.i.attentions.j`                     | `input_blocks.{(R+1)i+j+1}.1`             |
| `down_blocks.i.downsamplers.0.conv`              | `input_blocks.{(R+1)(i+1)}.0.op`          |
| `mid_block.resnets.0` / `attentions.0` / `resnets.1` | `middle_block.0` / `.1` / `.2`        |
| `controlnet_cond_embedding.conv_in`              | `input_hint_block.0`                      |
| `controlnet_cond_embedding.blocks.i`             | `input_hint_block.{2i+2}`                 |
| `controlnet_cond_embedding.conv_out`             | `input_hint_block.{2B+2}` (B blocks: 14)  |
| `controlnet_down_blocks.i`                       | `zero_convs.i.0`                          |
| `controlnet_mid_block`                           | `middle_block_out.0`                      |

R is the number of res blocks per level (2 in SD1.5 and SDXL). Inside a resnet: `norm1` -> `in_layers.0`, `conv1` ->
`in_layers.2`, `time_emb_proj` -> `emb_layers.1`, `norm2` -> `out_layers.0`, `conv2` -> `out_layers.3`,
`conv_shortcut` -> `skip_connection`. Attention modules (`norm`, `proj_in`, `transformer_blocks.k.*`, `proj_out`)
have the same names in both layouts. The tensors themselves are untouched (views of the file's).
"""
from __future__ import annotations

import re
from collections.abc import Mapping

import torch

DIFFUSERS_KEY = "controlnet_cond_embedding.conv_in.weight"

_RESNET = {"norm1": "in_layers.0", "conv1": "in_layers.2", "time_emb_proj": "emb_layers.1", "norm2": "out_layers.0",
           "conv2": "out_layers.3", "conv_shortcut": "skip_connection"}
_FIXED = {"time_embedding.linear_1": "time_embed.0", "time_embedding.linear_2": "time_embed.2",
          "add_embedding.linear_1": "label_emb.0.0", "add_embedding.linear_2": "label_emb.0.2",
          "conv_in": "input_blocks.0.0", "controlnet_cond_embedding.conv_in": "input_hint_block.0",
          "controlnet_mid_block": "middle_block_out.0"}
_PARAM = re.compile(r"(.+)\.(weight|bias)$")


def is_diffusers_layout(sd: Mapping[str, torch.Tensor]) -> bool:
    return DIFFUSERS_KEY in sd


def _count(sd: Mapping[str, torch.Tensor], pattern: str) -> int:
    found = {int(m.group(1)) for k in sd if (m := re.match(pattern, k))}
    if found and found != set(range(len(found))):
        raise ValueError(f"diffusers ControlNet: non-contiguous indices {sorted(found)} for {pattern!r}")
    return len(found)


def _module(name: str, res_blocks: int, hint_blocks: int) -> str:
    """The original module path of diffusers module `name` (without .weight/.bias); ValueError if unknown."""
    if name in _FIXED:
        return _FIXED[name]
    if name == "controlnet_cond_embedding.conv_out":
        return f"input_hint_block.{2 * hint_blocks + 2}"
    if m := re.fullmatch(r"controlnet_cond_embedding\.blocks\.(\d+)", name):
        return f"input_hint_block.{2 * int(m.group(1)) + 2}"
    if m := re.fullmatch(r"controlnet_down_blocks\.(\d+)", name):
        return f"zero_convs.{m.group(1)}.0"
    if m := re.fullmatch(r"down_blocks\.(\d+)\.downsamplers\.0\.conv", name):
        return f"input_blocks.{(res_blocks + 1) * (int(m.group(1)) + 1)}.0.op"
    if m := re.fullmatch(r"down_blocks\.(\d+)\.resnets\.(\d+)\.(\w+)", name):
        if m.group(3) in _RESNET:
            block = (res_blocks + 1) * int(m.group(1)) + int(m.group(2)) + 1
            return f"input_blocks.{block}.0.{_RESNET[m.group(3)]}"
    if m := re.fullmatch(r"down_blocks\.(\d+)\.attentions\.(\d+)\.(.+)", name):
        return f"input_blocks.{(res_blocks + 1) * int(m.group(1)) + int(m.group(2)) + 1}.1.{m.group(3)}"
    if m := re.fullmatch(r"mid_block\.resnets\.([01])\.(\w+)", name):
        if m.group(2) in _RESNET:
            return f"middle_block.{2 * int(m.group(1))}.{_RESNET[m.group(2)]}"
    if m := re.fullmatch(r"mid_block\.attentions\.0\.(.+)", name):
        return f"middle_block.1.{m.group(1)}"
    raise ValueError(f"unexpected key {name!r} for a diffusers-format ControlNet")


def to_original(sd: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The state dict of a diffusers-format ControlNet under the original keys (the table above). `sd` is not
    modified. Raises ValueError naming the first key it cannot place, or a ControlNet kind it does not map."""
    if not is_diffusers_layout(sd):
        raise ValueError(f"not a diffusers-format ControlNet: no {DIFFUSERS_KEY!r}")
    if any(k.startswith(("control_add_embedding.", "task_embedding")) for k in sd):
        raise ValueError("ControlNet Union (control_add_embedding / task_embedding) is not supported")
    if any(k.startswith(("class_embedding.", "encoder_hid_proj.")) for k in sd):
        raise ValueError("diffusers ControlNet with class or encoder-projection embeddings is not supported")
    res_blocks = _count(sd, r"down_blocks\.0\.resnets\.(\d+)\.")
    hint_blocks = _count(sd, r"controlnet_cond_embedding\.blocks\.(\d+)\.")
    if res_blocks < 1:
        raise ValueError("diffusers-format ControlNet without down_blocks.0.resnets.*")
    out: dict[str, torch.Tensor] = {}
    for key, value in sd.items():
        m = _PARAM.fullmatch(key)
        if m is None:
            raise ValueError(f"unexpected key {key!r} for a diffusers-format ControlNet")
        new = f"{_module(m.group(1), res_blocks, hint_blocks)}.{m.group(2)}"
        if new in out:
            raise ValueError(f"diffusers ControlNet: two keys map to {new!r}")
        out[new] = value
    return out
