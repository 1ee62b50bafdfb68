"""Merging networks into a model's live weights, A1111 v1.10 style: deltas are added, network after network, into
the layer weights in the model's storage dtype, `W ← (W.to(ΔW.dtype) + ΔW).to(W.dtype)`, always starting from a
kept copy of the original weights, so another set of networks (or none) restores the base bit for bit.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from .files import NetworkFile, read_network
from .modules import ModuleWeights, NetworkError, calc_updown, detect_type, module_kind
from .names import match_key, module_names

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ActiveNetwork:
    """A network to merge: its file, multipliers and DyLoRA rank, and the name used for it (prompt or file stem)."""

    path: Path
    te: float = 1.0
    unet: float = 1.0
    dyn: int | None = None
    name: str | None = None


@dataclass
class PreparedNetwork:
    file: NetworkFile
    modules: list[tuple[ModuleWeights, str]]  # (weights, type name), in file order


def _sdxl_or_sd2(file: NetworkFile) -> str | None:
    """Name the architecture a network was trained for when its metadata or keys say it is not SD1."""
    meta = file.metadata
    if str(meta.get("ss_base_model_version", "")).startswith("sdxl_"):
        return "SDXL (metadata ss_base_model_version=%s)" % meta["ss_base_model_version"]
    hit = next((k for k in file.state_dict if k.startswith("lora_te2_")), None)
    if hit is not None:
        return f"SDXL (a second text encoder: key {hit!r})"
    if str(meta.get("ss_v2", "")) == "True":
        return "SD2.x (metadata ss_v2=True)"
    return None


class NetworkMerger:
    """Keeps the original weights of every layer a network touched and merges sets of networks into the live model.

    unet / text_encoder: the modules named `diffusion_model_…` / `transformer_text_model_…`, as in A1111.
    """

    def __init__(self, unet: nn.Module, text_encoder: nn.Module, *, allow_pickle: bool = False):
        self.unet, self.text_encoder, self.allow_pickle = unet, text_encoder, allow_pickle
        self._names: dict | None = None
        self._backup: dict[str, tuple[nn.Module, torch.Tensor, torch.Tensor | None]] = {}
        self._key: tuple = ()
        self._cache: dict[tuple, PreparedNetwork] = {}
        self.active: list[ActiveNetwork] = []
        self.files: list[NetworkFile] = []

    # --- reading and matching ------------------------------------------------------------------------------------

    @property
    def names(self) -> dict:
        if self._names is None:
            self._names = module_names(self.unet, self.text_encoder)
        return self._names

    def prepare(self, path: Path) -> PreparedNetwork:
        """Read a file, group its keys by module, match them to this model and give each module its type."""
        stat = path.stat()
        cache_key = (path.resolve(), stat.st_mtime_ns, stat.st_size)
        if cache_key in self._cache:
            return self._cache[cache_key]
        file = read_network(path, allow_pickle=self.allow_pickle)
        other = _sdxl_or_sd2(file)
        if other:
            raise NetworkError(f"{path}: a network for {other}; this model is Stable Diffusion 1.x")
        groups: dict[str, ModuleWeights] = {}
        unmatched, bundled = [], []
        for full_key, tensor in file.state_dict.items():
            key, _, part = full_key.partition(".")
            if key == "bundle_emb":
                bundled.append(full_key)
                continue
            match = match_key(key, self.names)
            if match.name is None:
                unmatched.append(full_key)
                continue
            if match.name not in groups:
                groups[match.name] = ModuleWeights(key, match.name, self.names[match.name][2])
            groups[match.name].w[part] = tensor
        if bundled:
            raise NetworkError(f"{path}: bundled textual-inversion embeddings ({bundled[0]!r}, …) are not supported")
        if unmatched:
            shown = ", ".join(repr(k) for k in unmatched[:5]) + (f", … ({len(unmatched)} in all)" if len(unmatched) > 5
                                                                 else "")
            hint = ""
            if any(k.startswith(("unet.", "text_encoder.", "lora_unet.", "transformer.")) for k in unmatched):
                hint = " (dotted diffusers/PEFT keys: A1111 reads kohya-format files only)"
            raise NetworkError(f"{path}: {len(unmatched)} key(s) match no module of this SD1 model: {shown}{hint}; "
                               "A1111 drops such keys silently, inpaintlab refuses the file")
        modules = []
        for mw in groups.values():
            kind = detect_type(mw)
            if module_kind(mw.module) == "other":
                raise NetworkError(f"{path}: key {mw.key!r} targets {mw.name}, a {type(mw.module).__name__}, "
                                   "which A1111 never patches (Linear, Conv2d, GroupNorm and LayerNorm only)")
            modules.append((mw, kind))
        prepared = PreparedNetwork(file, modules)
        self._cache = {k: v for k, v in self._cache.items() if k[0] != cache_key[0]}
        self._cache[cache_key] = prepared
        return prepared

    # --- merging -------------------------------------------------------------------------------------------------

    def apply(self, networks: list[ActiveNetwork]) -> list[NetworkFile]:
        """Make exactly `networks` active (in order). Returns their files. On any error the base weights are restored
        and the error names the file and key."""
        prepared = [self.prepare(Path(n.path)) for n in networks]
        key = tuple((p.file.path.resolve(), p.file.hash, n.te, n.unet, n.dyn) for p, n in zip(prepared, networks))
        if key == self._key:
            return self.files
        self._restore()
        try:
            with torch.no_grad():
                for net, prep in zip(networks, prepared):
                    for mw, kind in prep.modules:
                        self._merge(prep.file, mw, kind, net)
        except BaseException:
            self._restore()
            raise
        self._key, self.active, self.files = key, list(networks), [p.file for p in prepared]
        for net, prep in zip(networks, prepared):
            log.debug("merged %s (te %g, unet %g): %d modules", prep.file.path, net.te, net.unet, len(prep.modules))
        # Only the active networks stay in memory (A1111's default lora_in_memory_limit of 0).
        active_paths = {p.file.path.resolve() for p in prepared}
        self._cache = {k: v for k, v in self._cache.items() if k[0] in active_paths}
        return self.files

    def clear(self) -> None:
        """Restore every touched layer to its original weights, bit for bit, and drop the kept copies."""
        self._restore()
        self._backup.clear()
        self._cache.clear()

    def _merge(self, file: NetworkFile, mw: ModuleWeights, kind: str, net: ActiveNetwork) -> None:
        module = mw.module
        if mw.name not in self._backup:
            bias = getattr(module, "bias", None)
            self._backup[mw.name] = (module, module.weight.detach().to("cpu", copy=True),
                                     None if bias is None else bias.detach().to("cpu", copy=True))
        W = module.weight
        try:
            updown, ex_bias = calc_updown(mw, kind, W, net.te, net.unet, net.dyn)
        except (RuntimeError, IndexError, KeyError) as e:
            raise NetworkError(f"{file.path}: {kind} module {mw.key!r} does not fit {mw.name} "
                               f"(weight {list(W.shape)}){_other_architecture(mw, W)}: {e}") from e
        if W.ndim == 4 and W.shape[1] == 9:
            # A 4-channel network on the 9-channel inpainting conv_in: zero-pad the input channels 4 → 9 (A1111).
            updown = torch.nn.functional.pad(updown, (0, 0, 0, 0, 0, 5))
        if not _fits(updown.shape, W.shape):
            raise NetworkError(f"{file.path}: {kind} module {mw.key!r} gives a delta of shape {list(updown.shape)} "
                               f"for {mw.name} of shape {list(W.shape)}{_other_architecture(mw, W)}")
        if ex_bias is not None:
            bias = getattr(module, "bias", None)
            target = W.shape[:1] if bias is None else bias.shape
            if not _fits(ex_bias.shape, target):
                raise NetworkError(f"{file.path}: {kind} module {mw.key!r} gives a bias delta of shape "
                                   f"{list(ex_bias.shape)} for {mw.name}'s bias of shape {list(target)}")
        W.copy_((W.to(updown.dtype) + updown).to(W.dtype))
        if ex_bias is not None:
            if module.bias is None:
                module.bias = nn.Parameter(ex_bias.to(W.device, W.dtype), requires_grad=False)
            else:
                module.bias.copy_((module.bias + ex_bias).to(module.bias.dtype))

    def _restore(self) -> None:
        with torch.no_grad():
            for module, weight, bias in self._backup.values():
                module.weight.copy_(weight)
                if bias is None:
                    if getattr(module, "bias", None) is not None:
                        module.bias = None
                else:
                    module.bias.copy_(bias)
        self._key, self.active, self.files = (), [], []


# Text widths of other Stable Diffusion versions that no SD1 layer has, so they show up in their networks' shapes.
_OTHER_WIDTHS = {1024: "SD2.x (OpenCLIP-H, 1024 wide)", 2048: "SDXL (2048-wide cross-attention context)"}


def _other_architecture(mw: ModuleWeights, W: torch.Tensor) -> str:
    widths = {d for t in mw.w.values() for d in t.shape} - set(W.shape)
    hits = [name for width, name in _OTHER_WIDTHS.items() if width in widths]
    return f"; the file's shapes look like a network for {' or '.join(hits)}" if hits else ""


def _fits(delta: torch.Size, target: torch.Size) -> bool:
    """Whether `target + delta` keeps target's shape (A1111 adds with broadcasting)."""
    try:
        return torch.broadcast_shapes(delta, target) == target
    except RuntimeError:
        return False
