"""Tiny random-weight checkpoints (SD 1.x, SD 2.x eps and v, SDXL, SDXL inpainting) in the real file layouts, for
tests, `inpaintlab demo` and `inpaintlab tiny`.

The three networks keep the SD1 structure (UNet with spatial transformers, a 4-level VAE so latents are image/8,
a 77-position CLIP text transformer over the full 49408-token vocabulary) at small widths. Weights are re-drawn
deterministically from a seed so that outputs are non-trivial (visible textures, no content): ~1/sqrt(fan_in)
weights, norm affines away from (1, 0), q/k scaled x1.5 so attention is not uniform, and non-zero proj_out /
output convs where training would start from zero. The checkpoint is written with the real prefixes plus a few
allow-listed extras, so loading it runs the same path as a real file.

SD 2.x and SDXL files keep their families' structure the same way: Linear projections and 64-channel heads, an OpenCLIP
text tower (SD 2.x) or CLIP-L plus OpenCLIP bigG and SDXL's ADM `label_emb` with three UNet levels and per-level
transformer depths (SDXL).
"""
from __future__ import annotations

import dataclasses
import math
from pathlib import Path

import torch
from torch import nn

from .checkpoint import (CLIP_POSITION_IDS, CLIP_PREFIX, SD2_TEXT_PREFIX, SDXL_CLIP_G_PREFIX, SDXL_CLIP_L_PREFIX,
                         UNET_PREFIX, VAE_PREFIX)
from .detect.tiny import TINY_DETECTOR, make_tiny_detector
from .files import atomic_path
from .clip.model import CLIPTextConfig, CLIPTextTransformer
from .clip.openclip import OpenCLIPTextConfig, OpenCLIPTextTransformer
from .controlnet.load import PREFIX as CONTROLNET_PREFIX
from .controlnet.model import ControlNet, ControlNetConfig
from .segment.tiny import make_tiny_sam
from .kernels import GroupNorm
from .unet import UNetConfig, UNetModel
from .vae import AutoencoderKL, VAEConfig

# Attention at both UNet levels, 8 heads as in SD1 (head dims 4 and 8), context width = CLIP width.
TINY_UNET = UNetConfig(in_channels=4, model_channels=32, channel_mult=(1, 2), num_res_blocks=1,
                       attention_resolutions=(1, 2), num_heads=8, context_dim=64)
# Four levels like SD1 (downscale 8); widths 32/64/64/64 stay multiples of the 32 GroupNorm groups.
TINY_VAE = VAEConfig(ch=32, ch_mult=(1, 2, 2, 2), num_res_blocks=1)
# One 64-wide head (SD1's head dim), full vocabulary and 77 positions so real token ids work.
TINY_CLIP = CLIPTextConfig(vocab_size=49408, max_positions=77, width=64, layers=2, mlp_dim=256)

# OpenCLIP towers (SD 2.x ViT-H, SDXL bigG) at the same size: one 64-wide head, 2 blocks (SD 2.x reads the
# penultimate one), a projection so SDXL's pooled vector exists.
TINY_OPENCLIP = OpenCLIPTextConfig(width=64, layers=2, mlp_dim=256, projection_dim=64)
# SD 2.x: Linear projections, 64-channel heads (1 and 2), context = the OpenCLIP width.
TINY_SD2_UNET = UNetConfig(model_channels=64, channel_mult=(1, 2), num_res_blocks=1, attention_resolutions=(1, 2),
                           num_head_channels=64, use_linear_in_transformer=True, context_dim=TINY_OPENCLIP.width)
# SDXL: three levels without attention at the first, depths 1 and 2 below (SDXL 2 and 10), context = CLIP-L + bigG
# widths, ADM = pooled (bigG projection) + 6 x 256 size features.
TINY_SDXL_UNET = UNetConfig(model_channels=64, channel_mult=(1, 2, 2), num_res_blocks=1, attention_resolutions=(4, 2),
                            num_head_channels=64, use_linear_in_transformer=True, transformer_depth=(0, 1, 2),
                            context_dim=TINY_CLIP.width + TINY_OPENCLIP.width,
                            adm_in_channels=TINY_OPENCLIP.projection_dim + 6 * 256)
# Where A1111's v-prediction probe (`checkpoint.is_v_prediction`) lands for tiny SD 2.x files: a trained v model gives
# a mean far below -1, an eps model about 0; random weights give anything, so the output bias is shifted to land here.
_PROBE_TARGET = {"v": -2.0, "eps": 0.0}

# Per-component offsets of the seed, so each network (and the standalone VAE) gets its own weights.
_SEED_OFFSETS = {"unet": 0, "vae": 1, "text_encoder": 2, "vae_file": 3, "controlnet": 4, "text_encoder_2": 5}
_NORMS = (GroupNorm, nn.GroupNorm, nn.LayerNorm)
_QK_SUFFIXES = ("to_q.weight", "to_k.weight", "q_proj.weight", "k_proj.weight", "attn_1.q.weight", "attn_1.k.weight")


def tiny_unet_config(inpainting: bool = False) -> UNetConfig:
    return dataclasses.replace(TINY_UNET, in_channels=9 if inpainting else 4)


@torch.no_grad()
def reinit_(module: nn.Module, seed: int = 0) -> nn.Module:
    """Overwrite every parameter of `module` deterministically from `seed` (see the module docstring)."""
    g = torch.Generator().manual_seed(seed)

    def draw(p: torch.Tensor, scale: float, base: float = 0.0) -> None:
        p.copy_(base + scale * torch.randn(p.shape, generator=g, dtype=torch.float32))

    for mod_name, mod in module.named_modules():
        is_norm = isinstance(mod, _NORMS)
        for p_name, p in mod.named_parameters(recurse=False):
            name = f"{mod_name}.{p_name}" if mod_name else p_name
            if is_norm:
                draw(p, 0.2, 1.0 if p_name == "weight" else 0.0)
            elif p.ndim == 1:
                draw(p, 0.1)
            else:
                draw(p, 1.0 / math.sqrt(math.prod(p.shape[1:])))
                if name.endswith(_QK_SUFFIXES):
                    p.mul_(1.5)
                elif name.endswith("attn.in_proj_weight"):  # OpenCLIP's fused [q; k; v] rows
                    p[: 2 * p.shape[0] // 3].mul_(1.5)
    return module


def _build(model_cls: type, config: object, seed: int, component: str, kernels: str) -> nn.Module:
    # fork_rng: the models' default initialisation must not advance the caller's global RNG.
    with torch.random.fork_rng(devices=[]):
        module = model_cls(config, kernels=kernels)
    return reinit_(module, 1000 * seed + _SEED_OFFSETS[component]).eval().requires_grad_(False)


def build_tiny_models(*, inpainting: bool = False, seed: int = 0,
                      kernels: str = "torch") -> tuple[UNetModel, AutoencoderKL, CLIPTextTransformer]:
    """The (unet, vae, text_encoder) that `make_tiny_checkpoint` saves for the same `inpainting` and `seed`."""
    return (
        _build(UNetModel, tiny_unet_config(inpainting), seed, "unet", kernels),
        _build(AutoencoderKL, TINY_VAE, seed, "vae", kernels),
        _build(CLIPTextTransformer, TINY_CLIP, seed, "text_encoder", kernels),
    )


def build_tiny_vae(*, seed: int = 0, kernels: str = "torch") -> AutoencoderKL:
    """The VAE that `make_tiny_vae_file` saves (different weights from the checkpoint's own VAE)."""
    return _build(AutoencoderKL, TINY_VAE, seed, "vae_file", kernels)


def build_tiny_controlnet(*, seed: int = 0, kernels: str = "torch") -> ControlNet:
    """A ControlNet for the tiny checkpoint's UNet: its encoder layout (4 input channels, as every SD1 ControlNet,
    also next to the 9-channel UNet) with SD1's hint encoder widths; `make_tiny_controlnet` saves it."""
    return _build(ControlNet, ControlNetConfig(unet=tiny_unet_config(False)), seed, "controlnet", kernels)


def make_tiny_controlnet(path: str | Path, *, seed: int = 0, dtype: torch.dtype = torch.float32) -> Path:
    """Write the tiny ControlNet in the official file layout (every key under `control_model.`)."""
    path = _check_suffix(path)
    model = build_tiny_controlnet(seed=seed)
    return _save({CONTROLNET_PREFIX + k: _stored(v, dtype) for k, v in model.state_dict().items()}, path)


def build_tiny_sdxl_controlnet(*, seed: int = 0, kernels: str = "torch") -> ControlNet:
    """An SDXL ControlNet for the tiny SDXL checkpoints' UNet: its encoder (4 input channels, `label_emb`, Linear
    projections) with SDXL's hint encoder widths; `make_tiny_sdxl_controlnet` saves it."""
    config = ControlNetConfig(unet=dataclasses.replace(TINY_SDXL_UNET, in_channels=4))
    return _build(ControlNet, config, seed, "controlnet", kernels)


def make_tiny_sdxl_controlnet(path: str | Path, *, seed: int = 0, dtype: torch.dtype = torch.float32) -> Path:
    """Write the tiny SDXL ControlNet in the original (sgm) layout, every key under `control_model.`."""
    path = _check_suffix(path)
    model = build_tiny_sdxl_controlnet(seed=seed)
    return _save({CONTROLNET_PREFIX + k: _stored(v, dtype) for k, v in model.state_dict().items()}, path)


def _schedule_alphas_cumprod() -> torch.Tensor:
    # SD1 "scaled_linear" schedule (linear_start 0.00085, linear_end 0.012, 1000 steps), stored as ldm does.
    betas = torch.linspace(0.00085 ** 0.5, 0.012 ** 0.5, 1000, dtype=torch.float64) ** 2
    return torch.cumprod(1.0 - betas, dim=0).float()


def tiny_state_dict(unet: nn.Module, vae: nn.Module, text_encoder: nn.Module, *,
                    dtype: torch.dtype = torch.float32) -> dict[str, torch.Tensor]:
    """Single-file LDM state dict of the three modules, with real prefixes and allow-listed extras."""
    sd: dict[str, torch.Tensor] = {}
    for prefix, module in ((UNET_PREFIX, unet), (VAE_PREFIX, vae), (CLIP_PREFIX, text_encoder)):
        sd.update({prefix + k: _stored(v, dtype) for k, v in module.state_dict().items()})
    positions = text_encoder.config.max_positions
    sd[CLIP_PREFIX + CLIP_POSITION_IDS] = torch.arange(positions, dtype=torch.int64)[None]  # as in real files
    sd["alphas_cumprod"] = _schedule_alphas_cumprod()
    sd["model_ema.decay"] = torch.tensor(0.9999)
    sd["model_ema.num_updates"] = torch.tensor(0, dtype=torch.int32)
    return sd


def make_tiny_checkpoint(path: str | Path, *, inpainting: bool = False, seed: int = 0,
                         dtype: torch.dtype = torch.float32) -> Path:
    """Write a tiny single-file SD1 checkpoint (`.safetensors`, 4- or 9-channel UNet) and return its path.

    Same `inpainting`/`seed` -> the same bytes; `build_tiny_models` returns the saved networks in memory.
    `dtype` is the storage dtype of the floating-point weights (fp16/bf16 exercise cast-on-load).
    """
    path = _check_suffix(path)
    unet, vae, text_encoder = build_tiny_models(inpainting=inpainting, seed=seed)
    return _save(tiny_state_dict(unet, vae, text_encoder, dtype=dtype), path)


TINY_FAMILIES = ("sd1", "sd2", "sdxl")


def build_tiny_family_models(family: str, *, inpainting: bool = False, prediction: str = "eps", seed: int = 0,
                             kernels: str = "torch") -> dict[str, nn.Module]:
    """{"unet", "vae", "text_encoder"[, "text_encoder_2"]} that `make_tiny_family_checkpoint` saves.

    SD 2.x files get their UNet's output bias shifted so that A1111's probe reads `prediction` ("eps" or "v").
    """
    if family not in TINY_FAMILIES:
        raise ValueError(f"family must be one of {TINY_FAMILIES}, got {family!r}")
    if prediction not in _PROBE_TARGET or prediction == "v" and (family != "sd2" or inpainting):
        raise ValueError(f"prediction {prediction!r} is not available for tiny {family}"
                         f"{' inpainting' if inpainting else ''} files (v: SD 2.x, 4 channels only)")
    in_channels = 9 if inpainting else 4
    if family == "sd1":
        unet, vae, clip = build_tiny_models(inpainting=inpainting, seed=seed, kernels=kernels)
        return {"unet": unet, "vae": vae, "text_encoder": clip}
    unet_config = TINY_SD2_UNET if family == "sd2" else TINY_SDXL_UNET
    models = {
        "unet": _build(UNetModel, dataclasses.replace(unet_config, in_channels=in_channels), seed, "unet", kernels),
        "vae": _build(AutoencoderKL, TINY_VAE, seed, "vae", kernels),
    }
    if family == "sd2":
        models["text_encoder"] = _build(OpenCLIPTextTransformer, TINY_OPENCLIP, seed, "text_encoder", kernels)
        if not inpainting:
            _calibrate_probe(models["unet"], _PROBE_TARGET[prediction])
    else:
        models["text_encoder"] = _build(CLIPTextTransformer, TINY_CLIP, seed, "text_encoder", kernels)
        models["text_encoder_2"] = _build(OpenCLIPTextTransformer, TINY_OPENCLIP, seed, "text_encoder_2", kernels)
    return models


@torch.no_grad()
def _calibrate_probe(unet: UNetModel, target: float) -> None:
    x = torch.full((1, unet.config.in_channels, 8, 8), 0.5)
    # The UNet's sums split by the intra-op thread count and round accordingly: a fixed count makes the written file
    # the same bytes whatever the caller's (or another library's) torch.set_num_threads.
    threads = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        out = unet(x, torch.tensor([999.0]), torch.full((1, 2, unet.config.context_dim), 0.5))
    finally:
        torch.set_num_threads(threads)
    unet.out[2].bias += target - (out - x).mean()


def tiny_family_state_dict(family: str, models: dict[str, nn.Module], *,
                           dtype: torch.dtype = torch.float32) -> dict[str, torch.Tensor]:
    """Single-file state dict in the family's layout (SD1: `tiny_state_dict`)."""
    if family == "sd1":
        return tiny_state_dict(models["unet"], models["vae"], models["text_encoder"], dtype=dtype)
    prefixes = [(UNET_PREFIX, "unet"), (VAE_PREFIX, "vae")]
    prefixes += [(SD2_TEXT_PREFIX, "text_encoder")] if family == "sd2" else [
        (SDXL_CLIP_L_PREFIX, "text_encoder"), (SDXL_CLIP_G_PREFIX, "text_encoder_2")]
    sd: dict[str, torch.Tensor] = {}
    for prefix, name in prefixes:
        sd.update({prefix + k: _stored(v, dtype) for k, v in models[name].state_dict().items()})
    if family == "sdxl":  # as in sd_xl_base_1.0: CLIP-L's position_ids, no DDPM schedule buffers
        sd[SDXL_CLIP_L_PREFIX + CLIP_POSITION_IDS] = torch.arange(TINY_CLIP.max_positions, dtype=torch.int64)[None]
        sd[SDXL_CLIP_G_PREFIX + "logit_scale"] = torch.tensor(4.6052)
    else:
        sd[SD2_TEXT_PREFIX + "logit_scale"] = torch.tensor(4.6052)
        sd["alphas_cumprod"] = _schedule_alphas_cumprod()
    return sd


def make_tiny_family_checkpoint(path: str | Path, family: str, *, inpainting: bool = False, prediction: str = "eps",
                                seed: int = 0, dtype: torch.dtype = torch.float32) -> Path:
    """Write a tiny SD1 / SD 2.x (eps or v) / SDXL checkpoint in the family's single-file layout; return its path."""
    path = _check_suffix(path)
    models = build_tiny_family_models(family, inpainting=inpainting, prediction=prediction, seed=seed)
    return _save(tiny_family_state_dict(family, models, dtype=dtype), path)


# File name -> (family, inpainting, prediction) of the tiny checkpoints of every family.
TINY_FAMILY_FILES = {
    "tiny-sd2.safetensors": ("sd2", False, "eps"),
    "tiny-sd2-v.safetensors": ("sd2", False, "v"),
    "tiny-sdxl.safetensors": ("sdxl", False, "eps"),
    "tiny-sdxl-inpainting.safetensors": ("sdxl", True, "eps"),
}


def write_tiny_family_files(folder: str | Path, seed: int = 0) -> list[Path]:
    """The tiny SD 2.x (eps), SD 2.x (v), SDXL and SDXL-inpainting checkpoints in `folder`."""
    folder = Path(folder)
    return [make_tiny_family_checkpoint(folder / name, family, inpainting=inpainting, prediction=prediction,
                                        seed=seed)
            for name, (family, inpainting, prediction) in TINY_FAMILY_FILES.items()]


def make_tiny_vae_file(path: str | Path, seed: int = 0, linear_attention: bool = False, *, prefix: str = "",
                       dtype: torch.dtype = torch.float32) -> Path:
    """Write a standalone tiny VAE file (keys `prefix` + ldm VAE names, like vae-ft-mse-840000) and return its path.

    linear_attention: store the mid-attention q/k/v/proj_out weights as Linear [C,C] instead of conv [C,C,1,1],
        as some converted community files do.
    """
    path = _check_suffix(path)
    vae = build_tiny_vae(seed=seed)
    sd = {}
    for key, value in vae.state_dict().items():
        value = _stored(value, dtype)
        if linear_attention and ".mid.attn_1." in key and value.ndim == 4:
            value = value[:, :, 0, 0].contiguous()
        sd[prefix + key] = value
    return _save(sd, path)


def _lora_pair(out_features: int, in_features: int, g: torch.Generator, rank: int = 4) -> dict[str, torch.Tensor]:
    return {"lora_down.weight": torch.randn(rank, in_features, generator=g) / in_features ** 0.5,
            "lora_up.weight": torch.randn(out_features, rank, generator=g) * 0.5, "alpha": torch.tensor(float(rank))}


def tiny_lora_state_dict(family: str = "sd1", seed: int = 0) -> dict[str, torch.Tensor]:
    """A kohya-format LoRA for the tiny `family` models: every attention projection of the UNet (compvis-named
    `lora_unet_…` keys, as SDXL trainers write them) and of the text encoders (`lora_te_…`, SDXL `lora_te1_`/`lora_te2_`
    in transformers' spelling, which A1111 maps to OpenCLIP's fused attention)."""
    if family not in TINY_FAMILIES:
        raise ValueError(f"family must be one of {TINY_FAMILIES}, got {family!r}")
    with torch.device("meta"):  # only the module names and shapes are needed
        models = {"unet": UNetModel({"sd1": TINY_UNET, "sd2": TINY_SD2_UNET, "sdxl": TINY_SDXL_UNET}[family]),
                  "text_encoder": (OpenCLIPTextTransformer(TINY_OPENCLIP) if family == "sd2"
                                   else CLIPTextTransformer(TINY_CLIP))}
        if family == "sdxl":
            models["text_encoder_2"] = OpenCLIPTextTransformer(TINY_OPENCLIP)
    g = torch.Generator().manual_seed(seed + 4242)
    sd: dict[str, torch.Tensor] = {}

    def add(key: str, out_features: int, in_features: int) -> None:
        sd.update({f"{key}.{part}": t for part, t in _lora_pair(out_features, in_features, g).items()})

    for name, module in models["unet"].named_modules():
        if isinstance(module, nn.Linear) and ".attn" in name:
            add("lora_unet_" + name.replace(".", "_"), module.out_features, module.in_features)
    encoders = [("lora_te_" if family == "sd1" else "lora_te1_", models["text_encoder"])] if family != "sd2" else []
    for prefix, encoder in encoders:  # CLIP-L: our names are transformers' below text_model.
        for name, module in encoder.named_modules():
            if isinstance(module, nn.Linear) and name.startswith("encoder.layers."):
                add(prefix + "text_model_" + name.replace(".", "_"), module.out_features, module.in_features)
    openclip = {"sd2": ("lora_te_", "text_encoder"), "sdxl": ("lora_te2_", "text_encoder_2")}.get(family)
    if openclip:
        encoder = models[openclip[1]]
        width, mlp = encoder.config.width, encoder.config.mlp_dim
        for n in range(encoder.config.layers):
            key = f"{openclip[0]}text_model_encoder_layers_{n}_"
            for proj in ("q_proj", "k_proj", "v_proj", "out_proj"):
                add(key + "self_attn_" + proj, width, width)
            add(key + "mlp_fc1", mlp, width)
            add(key + "mlp_fc2", width, mlp)
    return sd


_LORA_BASE_VERSIONS = {"sd1": "sd_v1", "sd2": "sd_v2", "sdxl": "sdxl_base_v1-0"}


def make_tiny_lora(path: str | Path, family: str = "sd1", seed: int = 0) -> Path:
    """Write `tiny_lora_state_dict(family, seed)` with kohya's `ss_base_model_version` metadata; return its path."""
    path = _check_suffix(path)
    return _save(tiny_lora_state_dict(family, seed), path, {"ss_base_model_version": _LORA_BASE_VERSIONS[family]})


TINY_SAM_FILE = "tiny-sam.safetensors"  # SAM v1 layout (inpaintlab.segment)
TINY_FILES = ("tiny.safetensors", "tiny-inpainting.safetensors", "tiny-vae.safetensors", "tiny-controlnet.safetensors")
# Segmentation and clean-up networks, written after the checkpoints: a SAM 2 image model and a LaMa generator.
TINY_TOOL_FILES = ("tiny-sam2.safetensors", "tiny-lama.safetensors")
# LoRA files (name -> family) that `inpaintlab tiny` writes under lora/, for `--lora-dir`.
TINY_LORAS = {"tiny-detail.safetensors": "sd1", "tiny-xl-detail.safetensors": "sdxl"}


def write_tiny_files(folder: str | Path, seed: int = 0) -> list[Path]:
    """`inpaintlab tiny`: a 4-channel and a 9-channel tiny SD1 checkpoint, a standalone VAE file, a ControlNet, and tiny
    SD 2.x (eps), SD 2.x (v), SDXL and SDXL-inpainting checkpoints in their own layouts (`TINY_FAMILY_FILES`), then a
    SAM 2 model and a LaMa generator in their official key layouts (`TINY_TOOL_FILES`) and a tiny SAM v1 file
    (`TINY_SAM_FILE`), in `folder`, tiny LoRA files for the SD1 and SDXL ones in `folder`/lora (`TINY_LORAS`), the tiny
    detector, and a tiny SDXL refiner (`refiner.tiny.TINY_REFINER_FILES`).

    Random weights paint textures, not content; the files exist to try every command without a real checkpoint.
    """
    from .refiner.tiny import write_tiny_refiner_files

    folder = Path(folder)
    plain, inpainting, vae, controlnet = (folder / name for name in TINY_FILES)
    (folder / "lora").mkdir(parents=True, exist_ok=True)
    return [make_tiny_checkpoint(plain, seed=seed), make_tiny_checkpoint(inpainting, inpainting=True, seed=seed),
            make_tiny_vae_file(vae, seed=seed), make_tiny_controlnet(controlnet, seed=seed)] \
        + write_tiny_family_files(folder, seed=seed) + write_tiny_tool_files(folder, seed=seed) \
        + [make_tiny_sam(folder / TINY_SAM_FILE, seed=seed)] \
        + [make_tiny_lora(folder / "lora" / name, family, seed=seed) for name, family in TINY_LORAS.items()] \
        + [make_tiny_detector(folder / TINY_DETECTOR, seed=seed)] + write_tiny_refiner_files(folder, seed=seed)


def write_tiny_tool_files(folder: str | Path, seed: int = 0) -> list[Path]:
    """A tiny SAM 2 file and a tiny LaMa generator file (`TINY_TOOL_FILES`) in `folder`."""
    from .lama import make_tiny_lama_file
    from .segment.sam2 import make_tiny_sam2_file

    sam2, lama = (Path(folder) / name for name in TINY_TOOL_FILES)
    return [make_tiny_sam2_file(sam2, seed=seed), make_tiny_lama_file(lama, seed=seed)]


def _stored(t: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """CPU copy for saving; only floating-point tensors take the storage dtype."""
    return t.detach().to("cpu", dtype if t.is_floating_point() else t.dtype).contiguous()


def _check_suffix(path: str | Path) -> Path:
    path = Path(path)
    if path.suffix != ".safetensors":
        raise ValueError(f"{path}: tiny checkpoints are written as .safetensors")
    return path


def _save(sd: dict[str, torch.Tensor], path: Path, metadata: dict[str, str] | None = None) -> Path:
    from safetensors.torch import save_file

    # Written to a temporary file and renamed, so an interrupted run never leaves a truncated checkpoint behind.
    with atomic_path(path) as tmp:
        # one entry by default: safetensors orders metadata arbitrarily
        save_file(sd, str(tmp), metadata=metadata or {"format": "pt"})
    return path
