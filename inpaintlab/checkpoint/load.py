"""Building the networks a checkpoint holds and loading each strictly (every key and shape checked)."""
from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass
from itertools import chain
from pathlib import Path

import torch
from torch import nn

from .family import read_vae, split_state_dict
from .layout import (
    SCALE_FACTOR,
    SDXL_SCALE_FACTOR,
    UNET_PREFIX,
    VAE_PREFIX,
    CheckpointError,
    Components,
    _preview,
)
from .read import read_state_dict, short_hash

log = logging.getLogger(__name__)


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

    family: "sd1", "sd2", "sdxl" or "sdxl_refiner"; prediction: "eps" or "v" (SD 2.x 768-v). text_encoder: CLIP-L
    (SD1, SDXL), OpenCLIP ViT-H (SD2) or the refiner's OpenCLIP bigG; text_encoder_2: SDXL's OpenCLIP bigG, else None.
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
    from ..kernels import check_backend
    from ..unet import UNetConfig, UNetModel
    from ..vae import AutoencoderKL, VAEConfig

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
    scale = SDXL_SCALE_FACTOR if parts.family in ("sdxl", "sdxl_refiner") else SCALE_FACTOR
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


def load_vae_file(path: str | Path, *, scale_factor: float = SCALE_FACTOR, device: str | torch.device = "cpu",
                  dtype: torch.dtype = torch.float32, kernels: str = "auto", allow_pickle: bool = False) -> nn.Module:
    """A standalone VAE file (A1111's "SD VAE") as an `AutoencoderKL`, loaded strictly, in eval mode: what
    `load_models(path, vae=...)` puts beside a checkpoint, for swapping the VAE of a loaded pipeline."""
    from ..kernels import check_backend
    from ..vae import AutoencoderKL, VAEConfig

    check_backend(kernels)
    sd = read_vae(path, allow_pickle=allow_pickle)
    config = _infer(lambda d: VAEConfig.from_state_dict(d, scale_factor=scale_factor), sd, "vae")
    return _build_and_load(AutoencoderKL, config, sd, "vae", "", torch.device(device), dtype, kernels)


def _load_text_encoders(parts: Components, device: torch.device, dtype: torch.dtype,
                        kernels: str) -> tuple[nn.Module, nn.Module | None]:
    from ..clip.model import CLIPTextConfig, CLIPTextTransformer

    if parts.family == "sd1":
        config = _infer(CLIPTextConfig.from_state_dict, parts.text_encoder, "text_encoder")
        return _build_and_load(CLIPTextTransformer, config, parts.text_encoder, "text_encoder",
                               parts.text_encoder_prefix, device, dtype, kernels), None
    from ..clip.openclip import OpenCLIPTextConfig, OpenCLIPTextTransformer

    if parts.family in ("sd2", "sdxl_refiner"):  # one OpenCLIP tower: ViT-H, or the refiner's bigG
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
