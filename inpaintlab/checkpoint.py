"""Read Stable Diffusion single-file checkpoints (SD 1.x, SD 2.x, SDXL) and standalone VAE files, tell the model
family apart, split the file by prefix and load each network strictly.

A single-file checkpoint holds the networks under fixed prefixes:

    model.diffusion_model.                            UNet                 (every family)
    first_stage_model.                                VAE                  (every family)
    cond_stage_model.transformer.text_model.          CLIP ViT-L/14        (SD 1.x)
    cond_stage_model.model.                           OpenCLIP ViT-H/14    (SD 2.x)
    conditioner.embedders.0.transformer.text_model.   CLIP ViT-L/14        (SDXL)
    conditioner.embedders.1.model.                    OpenCLIP ViT-bigG/14 (SDXL)

The modules carry the file's key names, so loading is "strip the prefix, check every shape, load_state_dict(strict)".
Keys outside the family's prefixes must be on the explicit allow-list below; anything else is an error, because a
silently ignored key is how a wrong architecture or a broken merge goes unnoticed. Families inpaintlab does not run
(SD3, Flux, the SDXL refiner, unCLIP, depth, instruct-pix2pix, ...) and diffusers layouts are refused by name.

Files are only ever read: safetensors tensor by tensor with plain reads (no memory map, so resident memory is the
tensors themselves), pickles (`.ckpt`/`.pt`/`.pth`/`.bin`) only on request and then with
`torch.load(weights_only=True)`.
"""
from __future__ import annotations

import hashlib
import json
import logging
import math
import re
import sys
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from itertools import chain
from pathlib import Path
from typing import NamedTuple

import torch
from torch import nn

from .errors import CheckpointError, MissingFileError  # CheckpointError is also imported from here
log = logging.getLogger(__name__)

UNET_PREFIX = "model.diffusion_model."
VAE_PREFIX = "first_stage_model."
CLIP_PREFIX = "cond_stage_model.transformer.text_model."
# Old transformers saves lack the `text_model.` level; it is inserted (A1111 and diffusers do the same).
CLIP_OLD_PREFIX = "cond_stage_model.transformer."
CLIP_PREFIXES = (CLIP_PREFIX, CLIP_OLD_PREFIX)
# Standalone VAE files: no prefix (vae-ft-mse-840000), the checkpoint prefix, or diffusers' single-file "vae.".
VAE_FILE_PREFIXES = ("", VAE_PREFIX, "vae.")

SCALE_FACTOR = 0.18215  # v1-inference.yaml scale_factor: latents are VAE samples times this

SAFETENSORS_SUFFIXES = (".safetensors",)
PICKLE_SUFFIXES = (".ckpt", ".pt", ".pth", ".bin")

# --- Allow-list: keys that may sit in an SD1 file next to the three networks and are ignored (debug-logged). ---
# The 12 DDPM schedule buffers of ldm's LatentDiffusion, each [1000]. The sampler schedule is always rebuilt from
# the constants (SD1's scaled-linear betas, 0.00085 to 0.012 over 1000 steps): many community files lack these, and
# merges may carry averaged values.
SCHEDULE_BUFFERS = (
    "betas", "alphas_cumprod", "alphas_cumprod_prev", "sqrt_alphas_cumprod", "sqrt_one_minus_alphas_cumprod",
    "log_one_minus_alphas_cumprod", "sqrt_recip_alphas_cumprod", "sqrt_recipm1_alphas_cumprod",
    "posterior_variance", "posterior_log_variance_clipped", "posterior_mean_coef1", "posterior_mean_coef2",
)
IGNORED_KEYS = frozenset(SCHEDULE_BUFFERS) | {
    "logvar",                 # [1000] learned-variance buffer, unused by eps-prediction sampling
    "model_ema.decay",        # LitEma scalars
    "model_ema.num_updates",
}
# LitEma's copy of the UNet ("model_ema.diffusion_modelinput_blocks00weight", dots removed). In emaonly files the EMA
# weights already sit under model.diffusion_model.; A1111 ignores the copy too (use_ema: False).
IGNORED_PREFIXES = ("model_ema.",)
# Stored position_ids are ignored: the text encoder always uses arange(77) (some merges hold drifted floats).
CLIP_POSITION_IDS = "embeddings.position_ids"

# Top-level names of a VAE state dict without prefix.
_VAE_ROOTS = ("encoder.", "decoder.", "quant_conv.", "post_quant_conv.")
# Segment names that exist only in diffusers' vocabulary (ldm says input_blocks/middle_block/down/up/mid).
_DIFFUSERS_KEY = re.compile(r"(^|\.)(down_blocks|up_blocks|mid_block|time_embedding|conv_norm_out)\.")
SD2_TEXT_PREFIX = "cond_stage_model.model."  # OpenCLIP ViT-H (SD2.x)
SDXL_CLIP_L_PREFIX = "conditioner.embedders.0.transformer.text_model."
SDXL_CLIP_G_PREFIX = "conditioner.embedders.1.model."
# Scalars of the OpenCLIP towers with no role in text encoding (CLIP's contrastive temperature).
OPENCLIP_IGNORED = ("logit_scale",)
# sgm's DiscreteDenoiser keeps its sigma table as a buffer; the schedule is rebuilt from the constants like SD1's.
SDXL_IGNORED_KEYS = frozenset({"denoiser.sigmas"})

SDXL_SCALE_FACTOR = 0.13025  # sd_xl_base.yaml first_stage scale_factor

FAMILIES = ("sd1", "sd2", "sdxl")
FAMILY_LABELS = {"sd1": "SD 1.x", "sd2": "SD 2.x", "sdxl": "SDXL"}

_SUPPORTED = ("inpaintlab supports Stable Diffusion 1.x, 2.x (512 eps, 768-v) and SDXL base single-file checkpoints "
              "(the 9-channel inpainting UNets included)")

# Other model families, recognised so that the refusal names them (checked in this order, first hit wins).
_OTHER_FAMILIES = (
    ("model.diffusion_model.x_embedder.proj.weight", "Stable Diffusion 3 (MMDiT)"),
    ("model.diffusion_model.joint_blocks.", "Stable Diffusion 3 (MMDiT)"),
    ("joint_blocks.0.context_block.", "Stable Diffusion 3 (MMDiT)"),
    ("model.diffusion_model.double_blocks.", "Flux"),
    ("double_blocks.0.img_attn.", "Flux"),
    ("edm_mean", "Playground v2.5 (EDM)"),
    ("conditioner.embedders.0.model.ln_final.weight", "SDXL refiner (OpenCLIP bigG only)"),
    ("embedder.model.ln_final.weight", "SD 2.x unCLIP"),
    ("depth_model.", "SD 2.0 depth"),
    ("cond_stage_model.roberta.", "AltDiffusion"),
    ("clip_txt_mapper.", "Stable Cascade"),
    ("down_blocks.1.0.channelwise.", "Stable Cascade"),
)
# Add-on networks, named when a file holds them instead of a UNet.
_ADD_ON_FILES = (("control_model.", "ControlNet"), ("lora_unet_", "LoRA"), ("lora_te", "LoRA"))


class Components(NamedTuple):
    """Prefix-stripped state dicts of the networks (keys relative to each module).

    text_encoder: CLIP-L (SD1, SDXL's first encoder) or OpenCLIP ViT-H (SD2); text_encoder_2: SDXL's OpenCLIP bigG.
    """

    unet: dict[str, torch.Tensor]
    vae: dict[str, torch.Tensor]
    text_encoder: dict[str, torch.Tensor]
    text_encoder_prefix: str = CLIP_PREFIX  # as the keys appear in the file (for messages)
    family: str = "sd1"
    text_encoder_2: dict[str, torch.Tensor] | None = None
    text_encoder_2_prefix: str | None = None


# ------------------------------------------------------------------------------------------------ reading files


def read_state_dict(path: str | Path, *, allow_pickle: bool = False) -> dict[str, torch.Tensor]:
    """Read a flat {key: tensor} dict from a `.safetensors` file or, with `allow_pickle=True`, a torch pickle.

    Pickles are refused by default: unpickling can run code. When allowed they are read with
    `torch.load(weights_only=True)` and nested "state_dict" levels are unwrapped. The file is never modified.
    """
    path = _existing_file(path)
    suffix = path.suffix.lower()
    if suffix in SAFETENSORS_SUFFIXES:
        sd = _read_safetensors(path)
    elif suffix in PICKLE_SUFFIXES:
        sd = _read_pickle(path, allow_pickle)
    else:
        raise CheckpointError(
            f"{path}: unknown checkpoint extension {path.suffix!r}; expected .safetensors "
            f"or (with allow_pickle=True) one of {', '.join(PICKLE_SUFFIXES)}"
        )
    if not sd:
        raise CheckpointError(f"{path}: the file holds no tensors, so it is not a checkpoint")
    return sd


def _existing_file(path: str | Path) -> Path:
    path = Path(path)
    if path.is_dir():
        if (path / "model_index.json").is_file() or (path / "unet").is_dir() or (path / "config.json").is_file():
            raise CheckpointError(
                f"{path}: diffusers-format folders are not supported; {_SUPPORTED} "
                "(.safetensors, or .ckpt with allow_pickle=True)"
            )
        raise CheckpointError(f"{path}: is a directory, not a checkpoint file")
    if not path.is_file():
        raise MissingFileError(f"checkpoint file not found: {path}")
    return path


_SAFETENSORS_DTYPES = {
    "F64": torch.float64, "F32": torch.float32, "F16": torch.float16, "BF16": torch.bfloat16,
    "I64": torch.int64, "I32": torch.int32, "I16": torch.int16, "I8": torch.int8, "U8": torch.uint8,
    "BOOL": torch.bool, "F8_E4M3": torch.float8_e4m3fn, "F8_E5M2": torch.float8_e5m2,
}


def _read_safetensors(path: Path) -> dict[str, torch.Tensor]:
    """Read every tensor of a safetensors file with plain reads into fresh CPU tensors, in the file's dtypes.

    The format is an 8-byte little-endian header length, a JSON header {name: {dtype, shape, data_offsets}} and the
    raw little-endian data. Reading instead of memory-mapping keeps the resident memory at the tensors alone (a
    mapped file's touched pages count as resident too, doubling the peak for a multi-gigabyte checkpoint).
    """

    def corrupt(reason: str) -> CheckpointError:
        return CheckpointError(f"{path}: not a valid safetensors file (truncated or corrupt?): {reason}")

    if sys.byteorder != "little":  # pragma: no cover - every supported platform is little-endian
        raise CheckpointError(f"{path}: reading safetensors needs a little-endian machine")
    size = path.stat().st_size
    with open(path, "rb") as f:
        head = f.read(8)
        if len(head) < 8:
            raise corrupt(f"{size} bytes, shorter than the 8-byte header length")
        n = int.from_bytes(head, "little")
        if n > size - 8:
            raise corrupt(f"header length {n} exceeds the file size {size}")
        try:
            header = json.loads(f.read(n))
        except (UnicodeDecodeError, json.JSONDecodeError) as e:
            raise corrupt(f"header is not JSON ({e})") from None
        if not isinstance(header, dict):
            raise corrupt("header is not a JSON object")
        header.pop("__metadata__", None)
        entries = []
        for name, info in header.items():
            try:
                dtype = _SAFETENSORS_DTYPES[info["dtype"]]
                shape = [int(d) for d in info["shape"]]
                begin, end = (int(o) for o in info["data_offsets"])
                if any(d < 0 for d in shape):
                    raise ValueError("negative dimension")
            except (KeyError, TypeError, ValueError) as e:
                raise corrupt(f"bad header entry for {name!r}: {info!r} ({e!r})") from None
            nbytes = dtype.itemsize * math.prod(shape)  # Python integers: a forged shape cannot overflow
            if end - begin != nbytes or begin < 0 or 8 + n + end > size:
                raise corrupt(f"tensor {name!r} ({info['dtype']} {shape}) has data offsets [{begin}, {end}] that do "
                              f"not fit its size {nbytes} or the file ({size} bytes)")
            entries.append((begin, name, dtype, shape, nbytes))
        sd: dict[str, torch.Tensor] = {}
        for begin, name, dtype, shape, nbytes in sorted(entries, key=lambda e: e[0]):
            buffer = torch.empty(nbytes, dtype=torch.uint8)
            f.seek(8 + n + begin)
            if nbytes and f.readinto(buffer.numpy()) != nbytes:
                raise corrupt(f"tensor {name!r} is cut off")
            sd[name] = buffer.view(dtype).reshape(shape)
    return {name: sd[name] for name in header}  # the file's key order


def _read_pickle(path: Path, allow_pickle: bool) -> dict[str, torch.Tensor]:
    if not allow_pickle:
        raise CheckpointError(
            f"{path}: refusing to read a pickle checkpoint ({path.suffix}); unpickling can run arbitrary code. "
            "Convert it to .safetensors, or pass allow_pickle=True to read it with torch.load(weights_only=True)"
        )
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # torch raises UnpicklingError, RuntimeError or EOFError depending on the damage
        raise CheckpointError(f"{path}: could not be read by torch.load(weights_only=True): {_torch_reason(e)}") from e
    # diffusers descends while "state_dict" is present; A1111 pops one level. Lightning files nest one level.
    while isinstance(obj, dict) and isinstance(obj.get("state_dict"), dict):
        obj = obj["state_dict"]
    if not isinstance(obj, dict):
        raise CheckpointError(f"{path}: holds a {type(obj).__name__}, not a state dict")
    bad = [k for k, v in obj.items() if not (isinstance(k, str) and isinstance(v, torch.Tensor))]
    if bad:
        raise CheckpointError(f"{path}: not a flat state dict; non-tensor entries: {_preview(map(repr, bad))}")
    return dict(obj)


def _torch_reason(error: Exception) -> str:
    """The line of torch.load's (often multi-paragraph) message that says what is wrong with the file."""
    text = re.sub(r"\x1b\[[0-9;]*m", "", str(error))
    if "WeightsUnpickler error:" in text:
        text = text.split("WeightsUnpickler error:", 1)[1]
    line = next((part.strip() for part in text.splitlines() if part.strip()), type(error).__name__)
    return line if len(line) <= 200 else line[:197] + "..."


def file_sha256(path: str | Path, *, chunk_size: int = 1 << 20) -> str:
    """Hex sha256 of a file, read in chunks (checkpoints are gigabytes)."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(chunk_size):
            h.update(chunk)
    return h.hexdigest()


def short_hash(path: str | Path) -> str:
    """The first 10 hex digits of the file's sha256: A1111's "Model hash" / "VAE hash" in the infotext."""
    return file_sha256(path)[:10]


# ------------------------------------------------------------------------------------- architecture and splitting


def detect_family(sd: Mapping[str, torch.Tensor], *, source: str = "checkpoint") -> str:
    """"sd1", "sd2" or "sdxl" for a single-file checkpoint, or CheckpointError naming what else the file is.

    In A1111's order (`guess_model_config_from_state_dict`): SD3 first, then SDXL (an OpenCLIP bigG under
    `conditioner.embedders.1.model.`), other sgm/ldm variants (refiner, unCLIP, depth), SD2 (an OpenCLIP text
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
}


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
    ignorable = IGNORED_KEYS | (SDXL_IGNORED_KEYS if family == "sdxl" else frozenset())
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
            if name == CLIP_POSITION_IDS and prefix != SD2_TEXT_PREFIX and prefix != SDXL_CLIP_G_PREFIX \
                    or name in OPENCLIP_IGNORED and prefix in (SD2_TEXT_PREFIX, SDXL_CLIP_G_PREFIX):
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
    from .vae.model import conv_attention_weights  # Linear [C,C] mid-attention weights -> conv [C,C,1,1]

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
    from .vae.model import conv_attention_weights

    return conv_attention_weights(vae)


# ------------------------------------------------------------------------------------------------------ loading


def _check_fit(expected: Mapping[str, torch.Tensor], sd: Mapping[str, torch.Tensor], component: str,
               prefix: str) -> None:
    missing = [k for k in expected if k not in sd]
    unexpected = [k for k in sd if k not in expected]
    mismatched = [
        f"{prefix}{k}: expected {list(expected[k].shape)}, found {list(sd[k].shape)}"
        for k in expected if k in sd and tuple(sd[k].shape) != tuple(expected[k].shape)
    ]
    problems = []
    if mismatched:
        problems.append(f"{len(mismatched)} shape mismatch(es): " + "; ".join(mismatched[:5])
                        + (f"; ... and {len(mismatched) - 5} more" if len(mismatched) > 5 else ""))
    if missing:
        problems.append(f"{len(missing)} missing key(s): {_preview(repr(prefix + k) for k in missing)}")
    if unexpected:
        problems.append(f"{len(unexpected)} unexpected key(s): {_preview(repr(prefix + k) for k in unexpected)}")
    if problems:
        raise CheckpointError(f"{component}: the weights do not fit the model: " + " | ".join(problems))


def load_component(module: nn.Module, sd: Mapping[str, torch.Tensor], component: str, *,
                   prefix: str = "") -> nn.Module:
    """Copy `sd` into `module` after checking that keys and shapes match exactly; return the module.

    Errors name the component, each key (with `prefix`, as it appears in the file), the expected and the found
    shape, and list missing and unexpected keys. Values are cast to the module's dtype and device on copy, so
    fp16/bf16 files load into fp32 modules and vice versa. `sd` is not modified.
    """
    _check_fit(module.state_dict(), sd, component, prefix)
    # Shapes agree, so strict loading can only fail on something unforeseen; copy_ casts dtype and device.
    module.load_state_dict(dict(sd), strict=True)
    return module


@dataclass
class Models:
    """The networks of a checkpoint, in eval mode with gradients off, plus what the pipeline and infotext need.

    family: "sd1", "sd2" or "sdxl"; prediction: "eps" or "v" (SD 2.x 768-v). text_encoder: CLIP-L (SD1, SDXL) or
    OpenCLIP ViT-H (SD2); text_encoder_2: SDXL's OpenCLIP bigG, else None.
    """

    unet: nn.Module
    vae: nn.Module
    text_encoder: nn.Module
    is_inpainting: bool  # 9 input channels: [noisy latent 4, mask 1, masked-image latent 4]
    model_name: str      # checkpoint file name without extension (A1111 "Model")
    model_hash: str      # first 10 hex digits of the file's sha256 (A1111 "Model hash")
    vae_name: str | None = None  # file name of a separate VAE (A1111 "VAE"), None for the checkpoint's own
    vae_hash: str | None = None
    scale_factor: float = SCALE_FACTOR
    device: torch.device = torch.device("cpu")
    dtype: torch.dtype = torch.float32
    family: str = "sd1"
    prediction: str = "eps"
    text_encoder_2: nn.Module | None = None


@torch.no_grad()
def is_v_prediction(unet: nn.Module) -> bool:
    """A1111's test for SD 2.x files (`is_using_v_parameterization_for_sd2`): run the UNet once on x = 0.5 everywhere
    ([1, 4, 8, 8]) at timestep 999 with a two-token context of 0.5, and call it v-prediction when
    mean(output - x) < -1.

    Near t = 999 the noisy input is almost pure noise, so an eps model returns about x (mean difference near 0), while
    a v model returns about -x0 scaled by sqrt(1 - alpha_bar), far below x.
    """
    cfg = unet.config
    p = next(unet.parameters())
    size = max(8, cfg.downsample_factor)
    x = torch.full((1, cfg.in_channels, size, size), 0.5, device=p.device, dtype=p.dtype)
    context = torch.full((1, 2, cfg.context_dim), 0.5, device=p.device, dtype=p.dtype)
    t = torch.tensor([999.0], device=p.device)
    extra = {}
    if getattr(cfg, "adm_in_channels", None) is not None:
        extra["y"] = torch.zeros(1, cfg.adm_in_channels, device=p.device, dtype=p.dtype)
    out = unet(x, t, context, **extra)
    return (out.float() - x[:, :out.shape[1]].float()).mean().item() < -1


def _file_float_dtype(sd: Mapping[str, torch.Tensor]) -> torch.dtype:
    """The floating dtype holding most of the weights (mixed files keep a few norms in fp32)."""
    counts: dict[torch.dtype, int] = {}
    for t in sd.values():
        if t.is_floating_point():
            counts[t.dtype] = counts.get(t.dtype, 0) + t.numel()
    return max(counts, key=counts.get) if counts else torch.float32


def load_models(path: str | Path, vae: str | Path | None = None, *, device: str | torch.device = "cpu",
                dtype: torch.dtype | None = torch.float32, kernels: str = "auto",
                allow_pickle: bool = False) -> Models:
    """Load the UNet, VAE and text encoder(s) of a single-file SD 1.x / 2.x / SDXL checkpoint (and optionally a
    separate VAE).

    The family is detected from the keys (`detect_family`), SD 2.x eps vs v by A1111's probe (`is_v_prediction`);
    configs are inferred from the weights and every key and shape is checked before anything is placed. `dtype` None
    keeps the file's own floating dtype (an fp16 SDXL file then needs about its own size in memory); otherwise each
    tensor is cast as it is placed, one at a time. `kernels` ("auto", "torch", "triton") is passed to every model.
    Input files are only read.
    """
    from .kernels import check_backend
    from .unet import UNetConfig, UNetModel
    from .vae import AutoencoderKL, VAEConfig

    check_backend(kernels)
    if dtype is not None and not (isinstance(dtype, torch.dtype) and dtype.is_floating_point):
        raise ValueError(f"dtype must be a floating-point torch.dtype or None (the file's), got {dtype!r}")
    device = torch.device(device)
    path = Path(path)
    sd = read_state_dict(path, allow_pickle=allow_pickle)
    parts = split_state_dict(sd, source=str(path), require_vae=vae is None)
    del sd  # the parts hold the tensors now; each is released as it is placed
    dtype = dtype if dtype is not None else _file_float_dtype(parts.unet)
    vae_sd = parts.vae if vae is None else read_vae(vae, allow_pickle=allow_pickle)
    if vae is not None and parts.vae:
        log.debug("%s: using the separate VAE %s instead of the checkpoint's own", path, vae)
        parts.vae.clear()

    unet_config = _infer(UNetConfig.from_state_dict, parts.unet, "unet")
    unet = _build_and_load(UNetModel, unet_config, parts.unet, "unet", UNET_PREFIX, device, dtype, kernels)
    in_channels = unet_config.in_channels
    prediction = "eps"
    if parts.family == "sd2" and in_channels == 4:
        prediction = "v" if is_v_prediction(unet) else "eps"
    scale = SDXL_SCALE_FACTOR if parts.family == "sdxl" else SCALE_FACTOR
    vae_config = _infer(lambda d: VAEConfig.from_state_dict(d, scale_factor=scale), vae_sd, "vae")
    vae_model = _build_and_load(AutoencoderKL, vae_config, vae_sd, "vae", "" if vae is not None else VAE_PREFIX,
                                device, dtype, kernels)
    text_encoder, text_encoder_2 = _load_text_encoders(parts, device, dtype, kernels)
    return Models(
        unet=unet, vae=vae_model, text_encoder=text_encoder, is_inpainting=in_channels == 9,
        model_name=path.stem, model_hash=short_hash(path),
        vae_name=None if vae is None else Path(vae).name, vae_hash=None if vae is None else short_hash(vae),
        scale_factor=scale, device=device, dtype=dtype, family=parts.family, prediction=prediction,
        text_encoder_2=text_encoder_2,
    )


def _load_text_encoders(parts: Components, device: torch.device, dtype: torch.dtype,
                        kernels: str) -> tuple[nn.Module, nn.Module | None]:
    from .clip.model import CLIPTextConfig, CLIPTextTransformer

    if parts.family == "sd1":
        config = _infer(CLIPTextConfig.from_state_dict, parts.text_encoder, "text_encoder")
        return _build_and_load(CLIPTextTransformer, config, parts.text_encoder, "text_encoder",
                               parts.text_encoder_prefix, device, dtype, kernels), None
    from .clip.openclip import OpenCLIPTextConfig, OpenCLIPTextTransformer

    if parts.family == "sd2":
        config = _infer(OpenCLIPTextConfig.from_state_dict, parts.text_encoder, "text_encoder")
        return _build_and_load(OpenCLIPTextTransformer, config, parts.text_encoder, "text_encoder",
                               parts.text_encoder_prefix, device, dtype, kernels), None
    config_l = _infer(CLIPTextConfig.from_state_dict, parts.text_encoder, "text_encoder")
    clip_l = _build_and_load(CLIPTextTransformer, config_l, parts.text_encoder, "text_encoder",
                             parts.text_encoder_prefix, device, dtype, kernels)
    config_g = _infer(OpenCLIPTextConfig.from_state_dict, parts.text_encoder_2, "text_encoder_2")
    clip_g = _build_and_load(OpenCLIPTextTransformer, config_g, parts.text_encoder_2, "text_encoder_2",
                             parts.text_encoder_2_prefix, device, dtype, kernels)
    return clip_l, clip_g


def _infer(from_state_dict, sd: dict[str, torch.Tensor], component: str):
    try:
        return from_state_dict(sd)
    except (KeyError, ValueError) as e:
        if isinstance(e, CheckpointError):
            raise
        detail = str(e.args[0]) if e.args else repr(e)
        raise CheckpointError(f"{component}: cannot infer the architecture from the weights: {detail}") from e


def _build_and_load(model_cls: type, config: object, sd: dict[str, torch.Tensor], component: str, prefix: str,
                    device: torch.device, dtype: torch.dtype, kernels: str) -> nn.Module:
    """Build the module on the meta device and hand it the file's tensors (cast one at a time where asked).

    No random initialisation (seconds for a full UNet on a CPU) and no second copy of the weights: each tensor is
    popped from `sd` as it is placed, so memory grows by at most one converted tensor at a time. Modules with
    non-persistent buffers (CLIP's position_ids, which a state dict cannot fill) are built normally instead.
    """
    with torch.device("meta"):
        module = model_cls(config, kernels=kernels)
    expected = module.state_dict()
    _check_fit(expected, sd, component, prefix)
    persistent = expected.keys()
    if not all(name in persistent for name, _ in chain(module.named_parameters(), module.named_buffers())):
        with torch.device(device):
            module = model_cls(config, kernels=kernels).to(dtype=dtype)
        load_component(module, sd, component, prefix=prefix)
        sd.clear()
        return module.eval().requires_grad_(False)
    placed = {}
    for key in list(sd):
        t = sd.pop(key)
        target = dtype if t.is_floating_point() else expected[key].dtype
        placed[key] = t.to(device=device, dtype=target).contiguous()
    module.load_state_dict(placed, strict=True, assign=True)
    return module.eval().requires_grad_(False)


def _preview(items: Iterable[str], n: int = 5) -> str:
    items = list(items)
    more = f", ... ({len(items)} in all)" if len(items) > n else ""
    return ", ".join(items[:n]) + more
