"""Telling the model family from the keys, refusing other architectures by name, and splitting a state dict
into its networks by prefix (checkpoints and standalone VAE files)."""
from __future__ import annotations

import logging
from collections.abc import Mapping
from pathlib import Path

import torch

from .layout import (
    _ADD_ON_FILES,
    _DIFFUSERS_KEY,
    _OTHER_FAMILIES,
    _SUPPORTED,
    _VAE_ROOTS,
    CLIP_OLD_PREFIX,
    CLIP_POSITION_IDS,
    CLIP_PREFIX,
    FAMILY_LABELS,
    IGNORED_KEYS,
    IGNORED_PREFIXES,
    OPENCLIP_IGNORED,
    SD2_TEXT_PREFIX,
    SDXL_CLIP_G_PREFIX,
    SDXL_CLIP_L_PREFIX,
    SDXL_IGNORED_KEYS,
    SDXL_REFINER_CLIP_G_PREFIX,
    UNET_PREFIX,
    VAE_FILE_PREFIXES,
    VAE_PREFIX,
    CheckpointError,
    Components,
    _preview,
)
from .read import read_state_dict

log = logging.getLogger(__name__)


def detect_family(sd: Mapping[str, torch.Tensor], *, source: str = "checkpoint") -> str:
    """"sd1", "sd2", "sdxl" or "sdxl_refiner" for a single-file checkpoint, or CheckpointError naming what else the file is.

    In A1111's order (`guess_model_config_from_state_dict`): SD3 first, then SDXL (an OpenCLIP bigG under
    `conditioner.embedders.1.model.`), the SDXL refiner (OpenCLIP bigG alone, under `conditioner.embedders.0.model.`),
    other sgm/ldm variants (unCLIP, depth), SD2 (an OpenCLIP text
    encoder under `cond_stage_model.model.`), instruct-pix2pix (8 input channels), AltDiffusion, and SD1 last.
    A1111 also requires the SD2 encoder to be 1024 wide; here its presence decides, so narrow test files work too.
    Whether an SD2 file predicts eps or v is decided later, by running its UNet (`is_v_prediction`).
    """
    keys = list(sd)
    has_unet = any(k.startswith(UNET_PREFIX) for k in keys)
    for marker, name in _OTHER_FAMILIES + (() if has_unet else _ADD_ON_FILES):
        hit = next((k for k in keys if k.startswith(marker)), None)
        if hit is not None:
            raise CheckpointError(f"{source}: {name} checkpoint (key {hit!r}) is not supported; {_SUPPORTED}")
    hit = next((k for k in keys if _DIFFUSERS_KEY.search(k)), None)
    if hit is not None:
        raise CheckpointError(
            f"{source}: diffusers layout is not supported (key {hit!r}); {_SUPPORTED} with their original key names"
        )
    conv_in = sd.get(UNET_PREFIX + "input_blocks.0.0.weight")
    if conv_in is not None and conv_in.ndim == 4 and conv_in.shape[1] not in (4, 9):
        kind = {8: "instruct-pix2pix", 7: "SD 2.x x4 upscaler"}.get(conv_in.shape[1], "unknown")
        raise CheckpointError(f"{source}: {kind} UNet ({conv_in.shape[1]} input channels) is not supported; "
                              f"{_SUPPORTED}")
    if any(k.startswith(SDXL_CLIP_G_PREFIX) for k in keys):
        family = "sdxl"
    elif any(k.startswith(SDXL_REFINER_CLIP_G_PREFIX) for k in keys):
        family = "sdxl_refiner"  # A1111: embedder 0's ln_final without an embedder 1 -> sd_xl_refiner.yaml
    elif any(k.startswith("conditioner.") for k in keys):
        hit = next(k for k in keys if k.startswith("conditioner."))
        raise CheckpointError(f"{source}: sgm conditioner keys (e.g. {hit!r}) without SDXL's OpenCLIP bigG under "
                              f"{SDXL_CLIP_G_PREFIX!r}: cannot tell the model family; {_SUPPORTED}")
    elif any(k.startswith(SD2_TEXT_PREFIX) for k in keys):
        family = "sd2"
    else:
        family = "sd1"
        _check_sd1_unet(sd, source)
    if not has_unet:
        _no_unet(sd, source, family)
    return family


def _check_sd1_unet(sd: Mapping[str, torch.Tensor], source: str) -> None:
    """An SD1-style file (CLIP-L text encoder or none) whose UNet is SD2/SDXL-shaped cannot be run: say so."""
    for k, v in sd.items():
        if not k.startswith(UNET_PREFIX):
            continue
        if k.startswith(UNET_PREFIX + "label_emb."):
            raise CheckpointError(f"{source}: SDXL-style UNet ({k!r}) without SDXL's text encoders under "
                                  f"'conditioner.embedders.': cannot tell the model family; {_SUPPORTED}")
        if k.endswith("attn2.to_k.weight") and v.shape[-1] == 1024 or k.endswith("proj_in.weight") and v.ndim == 2:
            raise CheckpointError(f"{source}: SD2-style UNet ({k!r} has shape {list(v.shape)}) without SD2's OpenCLIP "
                                  f"text encoder under {SD2_TEXT_PREFIX!r}: cannot tell the model family; "
                                  f"{_SUPPORTED}")


def _no_unet(sd: Mapping[str, torch.Tensor], source: str, family: str) -> None:
    keys = list(sd)
    if family == "sd1":
        if any(k.startswith(VAE_FILE_PREFIXES[1:] + _VAE_ROOTS) for k in keys) and not any(
            k.startswith(CLIP_OLD_PREFIX) for k in keys
        ):
            raise CheckpointError(
                f"{source}: looks like a standalone VAE file (VAE keys, no {UNET_PREFIX!r} keys); "
                "pass it as the separate VAE (vae=...), together with a full checkpoint"
            )
        if not any(k.startswith((VAE_PREFIX, CLIP_OLD_PREFIX)) for k in keys):
            raise CheckpointError(
                f"{source}: not a Stable Diffusion checkpoint: no key starts with {UNET_PREFIX!r}, {VAE_PREFIX!r} "
                f"or a text-encoder prefix (first keys: {_preview(map(repr, keys))}); {_SUPPORTED}"
            )
    raise CheckpointError(f"{source}: has no UNet weights (no keys start with {UNET_PREFIX!r})")


def check_architecture(sd: Mapping[str, torch.Tensor], *, source: str = "checkpoint") -> None:
    """Raise CheckpointError unless `sd` is a single-file checkpoint of a supported family (`detect_family`)."""
    detect_family(sd, source=source)


# Text-encoder prefixes per family: (prefix in the file, component name); SD1's old layout is handled separately.
_TEXT_PREFIXES = {
    "sd1": ((CLIP_OLD_PREFIX, "text_encoder"),),
    "sd2": ((SD2_TEXT_PREFIX, "text_encoder"),),
    "sdxl": ((SDXL_CLIP_L_PREFIX, "text_encoder"), (SDXL_CLIP_G_PREFIX, "text_encoder_2")),
    "sdxl_refiner": ((SDXL_REFINER_CLIP_G_PREFIX, "text_encoder"),),
}
_OPENCLIP_PREFIXES = (SD2_TEXT_PREFIX, SDXL_CLIP_G_PREFIX, SDXL_REFINER_CLIP_G_PREFIX)


def split_state_dict(sd: Mapping[str, torch.Tensor], *, source: str = "checkpoint",
                     require_vae: bool = True) -> Components:
    """Detect the family, split a single-file checkpoint by prefix and strip the prefixes.

    Allow-listed extras are dropped (debug log); any other key outside the family's prefixes is an error. With
    `require_vae=False` a file without `first_stage_model.` keys is accepted (a separate VAE will be loaded).
    The input mapping is not modified; the returned dicts share its tensors.
    """
    family = detect_family(sd, source=source)
    unet: dict[str, torch.Tensor] = {}
    vae: dict[str, torch.Tensor] = {}
    texts: dict[str, dict[str, torch.Tensor]] = {name: {} for _, name in _TEXT_PREFIXES[family]}
    ignored: list[str] = []
    unexpected: list[str] = []
    old_clip_layout = False
    ignorable = IGNORED_KEYS | (SDXL_IGNORED_KEYS if family in ("sdxl", "sdxl_refiner") else frozenset())
    for key, value in sd.items():
        if key.startswith(UNET_PREFIX):
            unet[key[len(UNET_PREFIX):]] = value
            continue
        if key.startswith(VAE_PREFIX):
            vae[key[len(VAE_PREFIX):]] = value
            continue
        if key in ignorable or key.startswith(IGNORED_PREFIXES):
            ignored.append(key)
            continue
        for prefix, component in _TEXT_PREFIXES[family]:
            if not key.startswith(prefix):
                continue
            name = key[len(prefix):]
            if family == "sd1":
                old_layout = not key.startswith(CLIP_PREFIX)
                old_clip_layout |= old_layout
                name = key[len(CLIP_OLD_PREFIX if old_layout else CLIP_PREFIX):]
                if name in texts[component]:
                    raise CheckpointError(
                        f"{source}: text encoder key {name!r} appears both with and without 'text_model.'")
            if name == CLIP_POSITION_IDS and prefix not in _OPENCLIP_PREFIXES \
                    or name in OPENCLIP_IGNORED and prefix in _OPENCLIP_PREFIXES:
                ignored.append(key)
            else:
                texts[component][name] = value
            break
        else:
            unexpected.append(key)
    expected = ", ".join(repr(p) for p in (UNET_PREFIX, VAE_PREFIX, *(
        CLIP_PREFIX if p == CLIP_OLD_PREFIX else p for p, _ in _TEXT_PREFIXES[family])))
    if unexpected:
        raise CheckpointError(
            f"{source}: {len(unexpected)} unexpected key(s) for an {FAMILY_LABELS[family]} checkpoint, outside "
            f"{expected} and the ignorable extras: {_preview(map(repr, unexpected))}"
        )
    if ignored:
        log.debug("%s: ignoring %d allow-listed keys: %s", source, len(ignored), _preview(ignored, 20))
    if require_vae and not vae:
        raise CheckpointError(f"{source}: has no VAE weights (no keys start with {VAE_PREFIX!r}); pass a separate VAE")
    for prefix, component in _TEXT_PREFIXES[family]:
        if not texts[component]:
            shown = CLIP_PREFIX if prefix == CLIP_OLD_PREFIX else prefix
            raise CheckpointError(f"{source}: has no text encoder weights (no keys start with {shown!r})")
    from ..vae.model import (
        conv_attention_weights,  # Linear [C,C] mid-attention weights -> conv [C,C,1,1]
    )

    first_prefix = _TEXT_PREFIXES[family][0][0]
    if family == "sd1":
        first_prefix = CLIP_OLD_PREFIX if old_clip_layout else CLIP_PREFIX
    return Components(unet, conv_attention_weights(vae), texts["text_encoder"], first_prefix, family,
                      texts.get("text_encoder_2"), SDXL_CLIP_G_PREFIX if family == "sdxl" else None)


def read_vae(path: str | Path, *, allow_pickle: bool = False) -> dict[str, torch.Tensor]:
    """Read a standalone VAE file and return its prefix-stripped state dict (ldm names, conv attention weights).

    Accepts the prefixes "", "first_stage_model." and "vae."; drops `loss*` keys (training discriminator) and the
    LitEma scalars, as A1111's VAE loader does. Full checkpoints and diffusers-format VAEs are refused.
    """
    path = Path(path)
    sd = read_state_dict(path, allow_pickle=allow_pickle)
    source = f"VAE file {path}"
    if any(k.startswith(UNET_PREFIX) for k in sd):
        raise CheckpointError(f"{source}: is a full checkpoint ({UNET_PREFIX!r} keys), not a VAE file")
    kept = {}
    for key, value in sd.items():
        if key.startswith("loss") or key in ("model_ema.decay", "model_ema.num_updates"):
            log.debug("%s: ignoring %s", source, key)
        else:
            kept[key] = value
    hit = next((k for k in kept if _DIFFUSERS_KEY.search(k)), None)
    if hit is not None:
        raise CheckpointError(f"{source}: diffusers layout is not supported (key {hit!r}); expected ldm VAE keys")
    prefix = next((p for p in VAE_FILE_PREFIXES[1:] if any(k.startswith(p) for k in kept)), "")
    vae, unexpected = {}, []
    for key, value in kept.items():
        name = key[len(prefix):] if key.startswith(prefix) else None
        if name is not None and name.startswith(_VAE_ROOTS):
            vae[name] = value
        else:
            unexpected.append(key)
    if not vae:
        raise CheckpointError(
            f"{source}: no VAE keys found (expected keys starting with {', '.join(map(repr, _VAE_ROOTS))}, "
            f"optionally prefixed by 'first_stage_model.' or 'vae.'; first keys: {_preview(map(repr, kept))})"
        )
    if unexpected:
        raise CheckpointError(
            f"{source}: {len(unexpected)} unexpected key(s) for a VAE with prefix {prefix!r}: "
            f"{_preview(map(repr, unexpected))}"
        )
    from ..vae.model import conv_attention_weights

    return conv_attention_weights(vae)


# ------------------------------------------------------------------------------------------------------ loading
