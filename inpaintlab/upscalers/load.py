"""Reading an upscaler file, telling its architecture from the keys, and the model object that runs it.

Files are `.safetensors` or torch pickles read with `torch.load(weights_only=True)` (which never runs pickled code).
As A1111 (through spandrel) does, the tensors may sit under one of `model_state_dict`, `state_dict`, `params_ema`,
`params-ema`, `params`, `model`, `net`, or under a single key, and may share a `module.` or `netG.` prefix. What is
left loads into the network with a strict `load_state_dict`, under the file's own key names.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping

import torch
import torch.nn.functional as F
from torch import nn

from ..checkpoint import CheckpointError, read_state_dict
from .compact import CompactConfig, SRVGGNetCompact
from .dat import DAT, DATConfig
from .errors import UpscalerError
from .rrdb import RRDBConfig, RRDBNet
from .scunet import SCUNet, SCUNetConfig
from .swinir import SwinIR, SwinIRConfig

log = logging.getLogger(__name__)

SCUNET_TILE = (256, 8)  # A1111's SCUNET_tile / SCUNET_tile_overlap defaults
_WRAPPERS = ("model_state_dict", "state_dict", "params_ema", "params-ema", "params", "model", "net")
_PREFIXES = ("module.", "netG.")
# (architecture, detection keys: all must be present, alternatives separated); the order matters (Compact's
# `body.0.weight` is generic, so it is tried last).
_ARCHES: tuple[tuple[str, tuple[tuple[str, ...], ...]], ...] = (
    ("ESRGAN", (("model.0.weight", "model.1.sub.0.RDB1.conv1.0.weight"),
                ("conv_first.weight", "body.0.rdb1.conv1.weight", "conv_body.weight", "conv_last.weight"),
                ("conv_first.weight", "RRDB_trunk.0.RDB1.conv1.weight", "trunk_conv.weight", "conv_last.weight"),
                ("model.0.weight", "model.1.sub.0.RDB1.conv1x1.weight"))),
    ("SwinIR", (("layers.0.residual_group.blocks.0.norm1.weight", "conv_first.weight",
                 "layers.0.residual_group.blocks.0.mlp.fc1.bias",
                 "layers.0.residual_group.blocks.0.attn.relative_position_index"),)),
    ("DAT", (("conv_first.weight", "before_RG.1.weight", "layers.0.blocks.0.ffn.sg.conv.weight",
              "layers.0.blocks.0.attn.attns.0.rpe_biases", "layers.0.blocks.0.attn.attns.0.pos.pos_proj.weight",
              "layers.0.blocks.0.attn.spatial_interaction.0.weight", "norm.weight"),)),
    ("SCUNet", (("m_head.0.weight", "m_tail.0.weight"),)),
    ("Compact", (("body.0.weight", "body.1.weight"),)),
)
# Recognised but not implemented (named in the error instead of "unknown").
_KNOWN_OTHERS = (("relative_position_index_SA", "HAT"), ("first_stage_model.", "LDSR"))


def canonical_state_dict(obj: object, source: str = "state dict") -> dict[str, torch.Tensor]:
    """Unwrap the containers and common prefixes upscaler files use (see the module docstring)."""
    if not isinstance(obj, Mapping):
        raise UpscalerError(f"{source}: holds a {type(obj).__name__}, not a state dict")
    for key in _WRAPPERS:
        if isinstance(obj.get(key), Mapping):
            obj = obj[key]
            break
    if len(obj) == 1 and isinstance(next(iter(obj.values())), Mapping):
        obj = next(iter(obj.values()))
    for prefix in _PREFIXES:
        if obj and all(isinstance(k, str) and k.startswith(prefix) for k in obj):
            obj = {k[len(prefix):]: v for k, v in obj.items()}
    bad = [k for k, v in obj.items() if not (isinstance(k, str) and isinstance(v, torch.Tensor))]
    if bad:
        raise UpscalerError(f"{source}: not a flat state dict of tensors (e.g. entry {bad[0]!r})")
    if not obj:
        raise UpscalerError(f"{source}: holds no tensors")
    return dict(obj)


def read_upscaler_file(path: str | Path) -> dict[str, torch.Tensor]:
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"upscaler file not found: {path}")
    try:
        if path.suffix.lower() == ".safetensors":
            obj: object = read_state_dict(path)
        else:
            obj = torch.load(path, map_location="cpu", weights_only=True)
    except CheckpointError as e:
        raise UpscalerError(str(e)) from None
    except Exception as e:  # noqa: BLE001  torch raises UnpicklingError, RuntimeError or EOFError on damage
        raise UpscalerError(f"{path}: could not be read with torch.load(weights_only=True): "
                            f"{str(e).splitlines()[0] if str(e) else type(e).__name__}") from None
    return canonical_state_dict(obj, str(path))


def detect_architecture(sd: Mapping[str, torch.Tensor], source: str = "state dict") -> str:
    for arch, alternatives in _ARCHES:
        if any(all(k in sd for k in keys) for keys in alternatives):
            return arch
    for marker, name in _KNOWN_OTHERS:
        if any(marker in k for k in sd):
            raise UpscalerError(f"{source}: {name} upscalers are not supported (RRDBNet/ESRGAN, SRVGGNetCompact, "
                                "SwinIR, DAT and SCUNet are)")
    sample = ", ".join(list(sd)[:4])
    raise UpscalerError(f"{source}: not a known upscaler architecture (keys start {sample})")


@dataclass(frozen=True)
class SizeRule:
    """Input size the network needs (spandrel's SizeRequirements): at least `minimum`, a multiple of `multiple`."""

    minimum: int = 0
    multiple: int = 1

    def padding(self, w: int, h: int) -> tuple[int, int]:
        def up(v: int) -> int:
            v = max(self.minimum, v)
            return -(-v // self.multiple) * self.multiple
        return up(w) - w, up(h) - h


def _pad(x: torch.Tensor, pw: int, ph: int) -> torch.Tensor:
    """Reflect as far as reflection allows (size − 1), replicate the rest: spandrel's descriptor padding."""
    h, w = x.shape[-2:]
    rw, rh = min(pw, w - 1), min(ph, h - 1)
    x = F.pad(x, (0, rw, 0, rh), mode="reflect")
    if pw > rw or ph > rh:
        x = F.pad(x, (0, pw - rw, 0, ph - rh), mode="replicate")
    return x


class UpscalerModel:
    """A loaded upscaler network: `model(x)` maps a (B, C, H, W) tensor in [0, 1] (in the model's dtype and device)
    to (B, C, H·scale, W·scale) in [0, 1], padding the input to the network's size rule and clamping the output,
    as A1111's spandrel descriptors do. `tiling` names A1111's tiling for the file ("grid" or "average");
    `tile_defaults` is A1111's (tile, overlap) option default for it, None for its tiling's (192, 8)."""

    def __init__(self, net: nn.Module, arch: str, scale: int, size: SizeRule, path: Path | None = None):
        self.net = net.eval().requires_grad_(False)
        self.arch, self.scale, self.size, self.path = arch, scale, size, path
        self.tiling = "average" if arch in ("SwinIR", "SCUNet") else "grid"
        self.tile_defaults: tuple[int, int] | None = SCUNET_TILE if arch == "SCUNet" else None
        self.name = path.stem if path is not None else arch

    @property
    def dtype(self) -> torch.dtype:
        return next(self.net.parameters()).dtype

    @property
    def device(self) -> torch.device:
        return next(self.net.parameters()).device

    def to(self, device: str | torch.device | None = None, dtype: torch.dtype | None = None) -> UpscalerModel:
        self.net.to(device=device, dtype=dtype)
        return self

    @torch.inference_mode()
    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        if x.ndim != 4:
            raise UpscalerError(f"{self.name}: expected a (B, C, H, W) tensor, got shape {tuple(x.shape)}")
        h, w = x.shape[-2:]
        pw, ph = self.size.padding(w, h)
        out = self.net(_pad(x, pw, ph) if pw or ph else x).clamp_(0, 1)
        return out[..., : h * self.scale, : w * self.scale] if pw or ph else out

    def __repr__(self) -> str:
        return f"UpscalerModel({self.name!r}, arch={self.arch}, scale={self.scale})"


def build(sd: Mapping[str, torch.Tensor], source: str = "state dict") -> tuple[nn.Module, str, int, SizeRule]:
    """The network for a canonical state dict, built from its shapes and strictly loaded."""
    arch = detect_architecture(sd, source)
    try:
        if arch == "ESRGAN":
            rcfg = RRDBConfig.from_state_dict(sd)
            net: nn.Module = RRDBNet(rcfg)
            scale, size = rcfg.scale, SizeRule(2, 4 if rcfg.shuffle > 1 else 1)
        elif arch == "SwinIR":
            scfg = SwinIRConfig.from_state_dict(sd)
            net, scale, size = SwinIR(scfg), scfg.scale, SizeRule(16, 1)
        elif arch == "DAT":
            dcfg = DATConfig.from_state_dict(sd)
            net, scale, size = DAT(dcfg), dcfg.scale, SizeRule(16, 1)
        elif arch == "SCUNet":
            net, scale, size = SCUNet(SCUNetConfig.from_state_dict(sd)), 1, SizeRule(40, 1)
        else:
            ccfg = CompactConfig.from_state_dict(sd)
            net, scale, size = SRVGGNetCompact(ccfg), ccfg.scale, SizeRule()
    except UpscalerError as e:
        raise UpscalerError(f"{source}: {e}") from None
    except (KeyError, IndexError, ValueError, TypeError, RuntimeError) as e:
        # the detection keys are there but a tensor the hyper-parameters are read from is missing or misshapen
        raise UpscalerError(f"{source}: {arch} weights with missing or misshapen tensors "
                            f"({type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''})") from None
    try:
        net.load_state_dict(sd, strict=True)
    except RuntimeError as e:
        first = str(e).splitlines()
        raise UpscalerError(f"{source}: the {arch} weights do not fit the network their shapes describe: "
                            f"{' '.join(s.strip() for s in first[:3])}") from None
    return net, arch, scale, size


def load(path: str | Path, *, device: str | torch.device = "cpu", dtype: torch.dtype = torch.float32) -> UpscalerModel:
    """Load an upscaler file (RRDBNet/ESRGAN in any layout, Real-ESRGAN, SRVGGNetCompact, SwinIR, DAT or SCUNet)."""
    path = Path(path)
    sd = read_upscaler_file(path)
    net, arch, scale, size = build(sd, str(path))
    log.info("loaded %s upscaler %s (x%d)", arch, path.name, scale)
    return UpscalerModel(net.to(device=device, dtype=dtype), arch, scale, size, path)
