"""Read SD 1.x single-file checkpoints and standalone VAE files, split them by prefix and load them strictly.

A single-file LDM checkpoint holds the three networks under fixed prefixes (the CompVis ldm key layout):

    model.diffusion_model.                      UNet       -> inpaintlab.unet.UNetModel
    first_stage_model.                          VAE        -> inpaintlab.vae.AutoencoderKL
    cond_stage_model.transformer.text_model.    CLIP text  -> inpaintlab.clip.model.CLIPTextTransformer

The modules carry the ldm key names, so loading is "strip the prefix, check every shape, load_state_dict(strict)".
Keys outside the three prefixes must be on the explicit allow-list below; anything else is an error, because a
silently ignored key is how a wrong architecture or a broken merge goes unnoticed.

Files are only ever read: safetensors through the safetensors library, pickles (`.ckpt`/`.pt`/`.pth`/`.bin`)
only on request and then with `torch.load(weights_only=True)`.
"""
from __future__ import annotations

import hashlib
import logging
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from itertools import chain
from pathlib import Path
from typing import NamedTuple

import torch
from torch import nn

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
_SD2_TEXT_PREFIX = "cond_stage_model.model."  # OpenCLIP ViT-H (SD2.x)
_SDXL_MARKERS = ("conditioner.embedders.", UNET_PREFIX + "label_emb.")

_SD2_MESSAGE = "unsupported architecture: SD2.x (OpenCLIP-H text encoder, context 1024) detected"
_SDXL_MESSAGE = "unsupported architecture: SDXL (two text encoders, label_emb) detected"
_SUPPORTED = "inpaintlab supports Stable Diffusion 1.x single-file checkpoints (the 9-channel inpainting UNet included)"


class CheckpointError(ValueError):
    """A file or state dict that is not a loadable SD 1.x checkpoint; the message names the problem."""


class Components(NamedTuple):
    """Prefix-stripped state dicts of the three networks (keys relative to each module)."""

    unet: dict[str, torch.Tensor]
    vae: dict[str, torch.Tensor]
    text_encoder: dict[str, torch.Tensor]
    text_encoder_prefix: str = CLIP_PREFIX  # CLIP_OLD_PREFIX for files without `text_model.` (for messages)


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
        raise FileNotFoundError(f"checkpoint file not found: {path}")
    return path


def _read_safetensors(path: Path) -> dict[str, torch.Tensor]:
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    try:
        return load_file(path, device="cpu")
    except SafetensorError as e:
        raise CheckpointError(f"{path}: not a valid safetensors file (truncated or corrupt?): {e}") from e


def _read_pickle(path: Path, allow_pickle: bool) -> dict[str, torch.Tensor]:
    if not allow_pickle:
        raise CheckpointError(
            f"{path}: refusing to read a pickle checkpoint ({path.suffix}); unpickling can run arbitrary code. "
            "Convert it to .safetensors, or pass allow_pickle=True to read it with torch.load(weights_only=True)"
        )
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # torch raises UnpicklingError, RuntimeError or EOFError depending on the damage
        raise CheckpointError(f"{path}: could not be read by torch.load(weights_only=True): {e}") from e
    # diffusers descends while "state_dict" is present; A1111 pops one level. Lightning files nest one level.
    while isinstance(obj, dict) and isinstance(obj.get("state_dict"), dict):
        obj = obj["state_dict"]
    if not isinstance(obj, dict):
        raise CheckpointError(f"{path}: holds a {type(obj).__name__}, not a state dict")
    bad = [k for k, v in obj.items() if not (isinstance(k, str) and isinstance(v, torch.Tensor))]
    if bad:
        raise CheckpointError(f"{path}: not a flat state dict; non-tensor entries: {_preview(map(repr, bad))}")
    return dict(obj)


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


def check_architecture(sd: Mapping[str, torch.Tensor], *, source: str = "checkpoint") -> None:
    """Raise CheckpointError unless `sd` looks like a single-file SD 1.x checkpoint.

    Recognises SDXL, SD2.x (OpenCLIP text encoder, 1024-wide cross-attention or Linear proj_in), diffusers key
    layouts and standalone VAE files, and says which one it found.
    """
    keys = list(sd)
    for marker in _SDXL_MARKERS:
        hit = next((k for k in keys if k.startswith(marker)), None)
        if hit is not None:
            raise CheckpointError(f"{_SDXL_MESSAGE} in {source} (key {hit!r}); {_SUPPORTED}")
    hit = next((k for k in keys if k.startswith(_SD2_TEXT_PREFIX)), None)
    if hit is not None:
        raise CheckpointError(f"{_SD2_MESSAGE} in {source} (OpenCLIP key {hit!r}); {_SUPPORTED}")
    for k in keys:
        if k.startswith(UNET_PREFIX) and k.endswith("attn2.to_k.weight") and sd[k].shape[-1] == 1024:
            raise CheckpointError(f"{_SD2_MESSAGE} in {source} ({k!r} has shape {list(sd[k].shape)}); {_SUPPORTED}")
        if k.startswith(UNET_PREFIX) and k.endswith("proj_in.weight") and sd[k].ndim == 2:
            raise CheckpointError(
                f"{_SD2_MESSAGE} in {source} (Linear proj_in: {k!r} has shape {list(sd[k].shape)}); {_SUPPORTED}"
            )
    hit = next((k for k in keys if _DIFFUSERS_KEY.search(k)), None)
    if hit is not None:
        raise CheckpointError(
            f"{source}: diffusers layout is not supported (key {hit!r}); {_SUPPORTED} with ldm key names"
        )
    if not any(k.startswith(UNET_PREFIX) for k in keys):
        if any(k.startswith(VAE_FILE_PREFIXES[1:] + _VAE_ROOTS) for k in keys) and not any(
            k.startswith(CLIP_OLD_PREFIX) for k in keys
        ):
            raise CheckpointError(
                f"{source}: looks like a standalone VAE file (VAE keys, no {UNET_PREFIX!r} keys); "
                "pass it as the separate VAE (vae=...), together with a full SD 1.x checkpoint"
            )
        if any(k.startswith((VAE_PREFIX, CLIP_OLD_PREFIX)) for k in keys):
            raise CheckpointError(f"{source}: has no UNet weights (no keys start with {UNET_PREFIX!r})")
        raise CheckpointError(
            f"{source}: not a Stable Diffusion 1.x checkpoint: no key starts with {UNET_PREFIX!r}, {VAE_PREFIX!r} "
            f"or {CLIP_OLD_PREFIX!r} (first keys: {_preview(map(repr, keys))})"
        )


def split_state_dict(sd: Mapping[str, torch.Tensor], *, source: str = "checkpoint",
                     require_vae: bool = True) -> Components:
    """Check the architecture, split a single-file checkpoint by prefix and strip the prefixes.

    Allow-listed extras are dropped (debug log); any other key outside the three prefixes is an error. With
    `require_vae=False` a file without `first_stage_model.` keys is accepted (a separate VAE will be loaded).
    The input mapping is not modified.
    """
    check_architecture(sd, source=source)
    unet: dict[str, torch.Tensor] = {}
    vae: dict[str, torch.Tensor] = {}
    clip: dict[str, torch.Tensor] = {}
    ignored: list[str] = []
    unexpected: list[str] = []
    old_clip_layout = False
    for key, value in sd.items():
        if key.startswith(UNET_PREFIX):
            unet[key[len(UNET_PREFIX):]] = value
        elif key.startswith(VAE_PREFIX):
            vae[key[len(VAE_PREFIX):]] = value
        elif key.startswith(CLIP_OLD_PREFIX):
            old_layout = not key.startswith(CLIP_PREFIX)
            old_clip_layout |= old_layout
            name = key[len(CLIP_OLD_PREFIX if old_layout else CLIP_PREFIX):]
            if name == CLIP_POSITION_IDS:
                ignored.append(key)
            elif name in clip:
                raise CheckpointError(
                    f"{source}: text encoder key {name!r} appears both with and without 'text_model.'")
            else:
                clip[name] = value
        elif key in IGNORED_KEYS or key.startswith(IGNORED_PREFIXES):
            ignored.append(key)
        else:
            unexpected.append(key)
    if unexpected:
        raise CheckpointError(
            f"{source}: {len(unexpected)} unexpected key(s) outside {UNET_PREFIX!r}, {VAE_PREFIX!r}, "
            f"{CLIP_PREFIX!r} and the ignorable extras: {_preview(map(repr, unexpected))}"
        )
    if ignored:
        log.debug("%s: ignoring %d allow-listed keys: %s", source, len(ignored), _preview(ignored, 20))
    if require_vae and not vae:
        raise CheckpointError(f"{source}: has no VAE weights (no keys start with {VAE_PREFIX!r}); pass a separate VAE")
    if not clip:
        raise CheckpointError(f"{source}: has no text encoder weights (no keys start with {CLIP_PREFIX!r})")
    from .vae.model import conv_attention_weights  # Linear [C,C] mid-attention weights -> conv [C,C,1,1]

    return Components(unet, conv_attention_weights(vae), clip, CLIP_OLD_PREFIX if old_clip_layout else CLIP_PREFIX)


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


def load_component(module: nn.Module, sd: Mapping[str, torch.Tensor], component: str, *,
                   prefix: str = "") -> nn.Module:
    """Copy `sd` into `module` after checking that keys and shapes match exactly; return the module.

    Errors name the component, each key (with `prefix`, as it appears in the file), the expected and the found
    shape, and list missing and unexpected keys. Values are cast to the module's dtype and device on copy, so
    fp16/bf16 files load into fp32 modules and vice versa. `sd` is not modified.
    """
    expected = module.state_dict()
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
    # Shapes agree, so strict loading can only fail on something unforeseen; copy_ casts dtype and device.
    module.load_state_dict(dict(sd), strict=True)
    return module


@dataclass
class Models:
    """The three networks of an SD 1.x checkpoint, in eval mode with gradients off, plus infotext facts."""

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


def load_models(path: str | Path, vae: str | Path | None = None, *, device: str | torch.device = "cpu",
                dtype: torch.dtype = torch.float32, kernels: str = "auto", allow_pickle: bool = False) -> Models:
    """Load UNet, VAE and CLIP text encoder from a single-file SD 1.x checkpoint (and optionally a separate VAE).

    Configs are inferred from the weights; every key and shape is checked before anything is copied. `kernels`
    ("auto", "torch", "triton") is passed to every model. Input files are only read.
    """
    from .clip.model import CLIPTextConfig, CLIPTextTransformer
    from .kernels import check_backend
    from .unet import UNetConfig, UNetModel
    from .vae import AutoencoderKL, VAEConfig

    check_backend(kernels)
    if not (isinstance(dtype, torch.dtype) and dtype.is_floating_point):
        raise ValueError(f"dtype must be a floating-point torch.dtype, got {dtype!r}")
    device = torch.device(device)
    path = Path(path)
    parts = split_state_dict(read_state_dict(path, allow_pickle=allow_pickle), source=str(path),
                             require_vae=vae is None)
    vae_sd = parts.vae if vae is None else read_vae(vae, allow_pickle=allow_pickle)
    if vae is not None and parts.vae:
        log.debug("%s: using the separate VAE %s instead of the checkpoint's own", path, vae)

    unet = _build_and_load(UNetModel, UNetConfig, parts.unet, "unet", UNET_PREFIX, device, dtype, kernels)
    vae_model = _build_and_load(AutoencoderKL, VAEConfig, vae_sd, "vae", "" if vae is not None else VAE_PREFIX,
                                device, dtype, kernels)
    clip = _build_and_load(CLIPTextTransformer, CLIPTextConfig, parts.text_encoder, "text_encoder",
                           parts.text_encoder_prefix, device, dtype, kernels)
    in_channels = parts.unet["input_blocks.0.0.weight"].shape[1]
    return Models(
        unet=unet, vae=vae_model, text_encoder=clip, is_inpainting=in_channels == 9,
        model_name=path.stem, model_hash=short_hash(path),
        vae_name=None if vae is None else Path(vae).name, vae_hash=None if vae is None else short_hash(vae),
        device=device, dtype=dtype,
    )


def _build_and_load(model_cls: type, config_cls: type, sd: dict[str, torch.Tensor], component: str, prefix: str,
                    device: torch.device, dtype: torch.dtype, kernels: str) -> nn.Module:
    try:
        config = config_cls.from_state_dict(sd)
    except (KeyError, ValueError) as e:
        if isinstance(e, CheckpointError):
            raise
        detail = str(e.args[0]) if e.args else repr(e)
        raise CheckpointError(f"{component}: cannot infer the architecture from the weights: {detail}") from e
    # Built on the meta device and given uninitialised storage in the target dtype: random initialisation of the
    # full UNet costs seconds on a CPU and would be overwritten anyway. That is only safe when every tensor of the
    # module is in its state dict (the strict load below then fills all of them); modules with non-persistent
    # buffers (CLIP's position_ids) are built normally on the target device.
    with torch.device("meta"):
        module = model_cls(config, kernels=kernels)
    persistent = module.state_dict().keys()
    if all(name in persistent for name, _ in chain(module.named_parameters(), module.named_buffers())):
        module = module.to(dtype=dtype).to_empty(device=device)
    else:
        with torch.device(device):
            module = model_cls(config, kernels=kernels).to(dtype=dtype)
    load_component(module, sd, component, prefix=prefix)
    module.eval().requires_grad_(False)
    return module


def _preview(items: Iterable[str], n: int = 5) -> str:
    items = list(items)
    more = f", ... ({len(items)} in all)" if len(items) > n else ""
    return ", ".join(items[:n]) + more
