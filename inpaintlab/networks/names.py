"""Network key names: kohya `lora_unet_…`/`lora_te_…`/`lora_te1_…`/`lora_te2_…` module keys → the model's own modules.

A1111 v1.10 names every module of the loaded model after its ldm/sgm path with `.` replaced by `_`: the UNet's
prefixed `diffusion_model_`, the text encoder's after the level below `cond_stage_model.wrapped` (SD1
`transformer_text_model_…`, SD 2.x `model_transformer_resblocks_…`), SDXL's two encoders numbered by their place in
the conditioner (`0_transformer_text_model_…` CLIP-L, `1_model_transformer_resblocks_…` OpenCLIP bigG). It converts
kohya's diffusers-style keys to those names with a fixed table written for SD1's UNet layout (two res blocks per level,
three input blocks per level) and the transformers CLIP names to OpenCLIP's. Our parameter names are the checkpoint's,
so the same names address our modules directly.
"""
from __future__ import annotations

import re
from dataclasses import dataclass

from torch import nn

UNET_NAME_PREFIX = "diffusion_model_"
TE_NAME_PREFIX = "transformer_text_model_"
# The text encoders' name prefixes per family, in the pipeline's order (text_encoder, text_encoder_2).
TE_NAME_PREFIXES = {
    "sd1": (TE_NAME_PREFIX,),
    "sd2": ("model_",),
    "sdxl": ("0_" + TE_NAME_PREFIX, "1_model_"),
    "sdxl_refiner": ("0_model_",),  # A1111 names the refiner's only embedder (OpenCLIP bigG) by its index, 0
}
FAMILY_NAMES = {"sd1": "Stable Diffusion 1.x", "sd2": "Stable Diffusion 2.x", "sdxl": "SDXL",
                "sdxl_refiner": "SDXL refiner"}

# Resnet sub-module names: diffusers → ldm ResBlock. Attention sub-modules keep their names.
_RESNET_SUFFIXES = {
    "conv1": "in_layers_2", "conv2": "out_layers_3", "norm1": "in_layers_0", "norm2": "out_layers_0",
    "time_emb_proj": "emb_layers_1", "conv_shortcut": "skip_connection",
}


def _suffix(kind: str, rest: str) -> str:
    return _RESNET_SUFFIXES.get(rest, rest) if kind == "resnets" else rest


def _conv_in(m: re.Match) -> str:
    return f"diffusion_model_input_blocks_0_0{m[1]}"


def _conv_out(m: re.Match) -> str:
    return f"diffusion_model_out_2{m[1]}"


def _time(m: re.Match) -> str:
    return f"diffusion_model_time_embed_{int(m[1]) * 2 - 2}{m[2]}"


def _down(m: re.Match) -> str:
    block, kind, index = int(m[1]), m[2], int(m[3])
    return f"diffusion_model_input_blocks_{1 + 3 * block + index}_{1 if kind == 'attentions' else 0}_{_suffix(kind, m[4])}"


def _mid(m: re.Match) -> str:
    kind, index = m[1], int(m[2])
    return f"diffusion_model_middle_block_{1 if kind == 'attentions' else 2 * index}_{_suffix(kind, m[3])}"


def _up(m: re.Match) -> str:
    block, kind, index = int(m[1]), m[2], int(m[3])
    return f"diffusion_model_output_blocks_{3 * block + index}_{1 if kind == 'attentions' else 0}_{_suffix(kind, m[4])}"


def _downsampler(m: re.Match) -> str:
    return f"diffusion_model_input_blocks_{3 + 3 * int(m[1])}_0_op"


def _upsampler(m: re.Match) -> str:
    block = int(m[1])
    return f"diffusion_model_output_blocks_{2 + 3 * block}_{2 if block > 0 else 1}_conv"


def _openclip_suffix(rest: str) -> str:
    # transformers' CLIP layer names → OpenCLIP's (A1111 renames fc1/fc2 and self_attn only).
    if "mlp_fc1" in rest:
        return rest.replace("mlp_fc1", "mlp_c_fc")
    if "mlp_fc2" in rest:
        return rest.replace("mlp_fc2", "mlp_c_proj")
    return rest.replace("self_attn", "attn")


def _text(m: re.Match, is_sd2: bool = False) -> str:
    if is_sd2:
        return f"model_transformer_resblocks_{m[1]}_{_openclip_suffix(m[2])}"
    return f"transformer_text_model_encoder_layers_{m[1]}_{m[2]}"


def _text2(m: re.Match) -> str:
    return f"1_model_transformer_resblocks_{m[1]}_{_openclip_suffix(m[2])}"


# A1111 v1.10 `convert_diffusers_name_to_compvis`: patterns anchored at the start, first match wins.
_TABLE = (
    (re.compile(r"lora_unet_conv_in(.*)"), _conv_in),
    (re.compile(r"lora_unet_conv_out(.*)"), _conv_out),
    (re.compile(r"lora_unet_time_embedding_linear_(\d+)(.*)"), _time),
    (re.compile(r"lora_unet_down_blocks_(\d+)_(attentions|resnets)_(\d+)_(.+)"), _down),
    (re.compile(r"lora_unet_mid_block_(attentions|resnets)_(\d+)_(.+)"), _mid),
    (re.compile(r"lora_unet_up_blocks_(\d+)_(attentions|resnets)_(\d+)_(.+)"), _up),
    (re.compile(r"lora_unet_down_blocks_(\d+)_downsamplers_0_conv"), _downsampler),
    (re.compile(r"lora_unet_up_blocks_(\d+)_upsamplers_0_conv"), _upsampler),
    (re.compile(r"lora_te_text_model_encoder_layers_(\d+)_(.+)"), _text),
    (re.compile(r"lora_te2_text_model_encoder_layers_(\d+)_(.+)"), _text2),
)
_X_PROJ = re.compile(r"(.*)_([qkv]_proj)$")


def convert_kohya_name(key: str, is_sd2: bool = False) -> str:
    """A kohya module key (the part before the first '.') → A1111's compvis module name; unknown keys unchanged.

    is_sd2: the model's text encoder is OpenCLIP's (A1111 tests for a `model_transformer_resblocks` module), so
    `lora_te_` keys name its layers."""
    for pattern, build in _TABLE:
        m = pattern.match(key)
        if m:
            return build(m, is_sd2) if build is _text else build(m)
    return key


def module_names(unet: nn.Module, text_encoder: nn.Module, *, text_encoder_2: nn.Module | None = None,
                 family: str = "sd1") -> dict[str, tuple[str, str, nn.Module]]:
    """{compvis module name: (component, our dotted module name, module)} for every module of the networks.

    The UNet's modules are `model.diffusion_model.*` in the checkpoint; A1111 names them from the level below
    `model.`, and the text encoders as `TE_NAME_PREFIXES` gives for the family.
    """
    if family not in TE_NAME_PREFIXES:
        raise ValueError(f"unknown model family {family!r}; expected one of {', '.join(TE_NAME_PREFIXES)}")
    encoders = [("text_encoder", text_encoder), ("text_encoder_2", text_encoder_2)][:len(TE_NAME_PREFIXES[family])]
    if family == "sdxl" and text_encoder_2 is None:
        raise ValueError("an SDXL model has two text encoders; pass text_encoder_2")
    index: dict[str, tuple[str, str, nn.Module]] = {}
    parts = [("unet", UNET_NAME_PREFIX, unet)] + [(c, p, m) for (c, m), p in zip(encoders, TE_NAME_PREFIXES[family])]
    for component, prefix, model in parts:
        for name, module in model.named_modules():
            if name:
                index[prefix + name.replace(".", "_")] = (component, name, module)
    return index


@dataclass(frozen=True)
class Match:
    """Where a network module key lands: the compvis name, or None when it matches no module."""

    key: str            # the key as in the file, before the first '.'
    name: str | None    # compvis name the key's weights are filed under (A1111's `sd_key`)
    tried: tuple[str, ...]  # names looked up, for error messages
    module: str | None = None  # the module they change, when not `name`: a fused q/k/v attention for `…_q_proj`


def match_key(key: str, names: dict) -> Match:
    """Look up a kohya key as A1111 v1.10's `load_network` does: the table, then its fallbacks, in order."""
    tried = []

    def hit(candidate: str) -> bool:
        tried.append(candidate)
        return candidate in names

    name = convert_kohya_name(key, is_sd2="model_transformer_resblocks" in names)
    if hit(name):
        return Match(key, name, tuple(tried))
    m = _X_PROJ.match(name)
    if m and hit(m[1]):  # OpenCLIP's fused q/k/v attention (SD 2.x, SDXL's bigG): filed per projection
        return Match(key, name, tuple(tried), module=m[1])
    # Checkpoint-named (compvis) keys, as SDXL trainers and some SD1 ones write them.
    if "lora_unet" in key:
        if hit(key.replace("lora_unet", "diffusion_model")):
            return Match(key, tried[-1], tuple(tried))
    elif "lora_te1_text_model" in key:
        for candidate in (key.replace("lora_te1_text_model", "0_transformer_text_model"),
                          key.replace("lora_te1_text_model", "transformer_text_model")):
            if hit(candidate):
                return Match(key, candidate, tuple(tried))
    elif "oft_unet" in key:
        if hit(key.replace("oft_unet", "diffusion_model")):
            return Match(key, tried[-1], tuple(tried))
    return Match(key, None, tuple(dict.fromkeys(tried)))
