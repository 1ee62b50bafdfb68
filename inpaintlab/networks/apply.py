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
from .names import FAMILY_NAMES, match_key, module_names

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
class FusedQKV:
    """The q, k and v modules of one OpenCLIP attention layer, whose projections share one `in_proj_weight`."""

    name: str                                # compvis name of the attention module
    module: nn.Module
    parts: list[tuple[ModuleWeights, str]]   # (weights, type name) for q, k, v


@dataclass
class PreparedNetwork:
    file: NetworkFile
    modules: list[tuple[ModuleWeights, str] | FusedQKV]  # (weights, type name), in file order


# kohya's `ss_base_model_version` values by family (sd-scripts' model_util).
_BASE_VERSIONS = (("sdxl_", "sdxl"), ("sd_v2", "sd2"), ("sd_v1", "sd1"))


def network_family(file: NetworkFile) -> tuple[str, str] | None:
    """(family, why) when a network's metadata or keys say which Stable Diffusion it was trained for, else None."""
    meta = file.metadata
    version = str(meta.get("ss_base_model_version", ""))
    for prefix, family in _BASE_VERSIONS:
        if version.startswith(prefix):
            return family, f"metadata ss_base_model_version={version}"
    hit = next((k for k in file.state_dict if k.startswith("lora_te2_")), None)
    if hit is not None:
        return "sdxl", f"a second text encoder: key {hit!r}"
    if str(meta.get("ss_v2", "")) == "True":
        return "sd2", "metadata ss_v2=True"
    return None


class NetworkMerger:
    """Keeps the original weights of every layer a network touched and merges sets of networks into the live model.

    unet / text_encoder (/ text_encoder_2 for SDXL): the modules named `diffusion_model_…` and as
    `names.TE_NAME_PREFIXES` gives for `family` ("sd1", "sd2" or "sdxl"), as in A1111.
    """

    def __init__(self, unet: nn.Module, text_encoder: nn.Module, *, text_encoder_2: nn.Module | None = None,
                 family: str = "sd1", allow_pickle: bool = False):
        self.unet, self.text_encoder, self.allow_pickle = unet, text_encoder, allow_pickle
        self.text_encoder_2, self.family = text_encoder_2, family
        self.family_name = FAMILY_NAMES.get(family, family)
        self._names: dict | None = None
        # compvis name -> (module, weight attribute, weight copy, bias copy)
        self._backup: dict[str, tuple[nn.Module, str, torch.Tensor, torch.Tensor | None]] = {}
        self._key: tuple = ()
        self._cache: dict[tuple, PreparedNetwork] = {}
        self.active: list[ActiveNetwork] = []
        self.files: list[NetworkFile] = []

    # --- reading and matching ------------------------------------------------------------------------------------

    @property
    def names(self) -> dict:
        if self._names is None:
            self._names = module_names(self.unet, self.text_encoder, text_encoder_2=self.text_encoder_2,
                                       family=self.family)
        return self._names

    def prepare(self, path: Path) -> PreparedNetwork:
        """Read a file, group its keys by module, match them to this model and give each module its type."""
        stat = path.stat()
        cache_key = (path.resolve(), stat.st_mtime_ns, stat.st_size)
        if cache_key in self._cache:
            return self._cache[cache_key]
        file = read_network(path, allow_pickle=self.allow_pickle)
        trained = network_family(file)
        if trained and trained[0] != self.family:
            raise NetworkError(f"{path}: a network for {FAMILY_NAMES[trained[0]]} ({trained[1]}); this model is "
                               f"{self.family_name}")
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
                groups[match.name] = ModuleWeights(key, match.name, self.names[match.module or match.name][2])
            groups[match.name].w[part] = tensor
        if bundled:
            raise NetworkError(f"{path}: bundled textual-inversion embeddings ({bundled[0]!r}, …) are not supported")
        if unmatched:
            shown = ", ".join(repr(k) for k in unmatched[:5]) + (f", … ({len(unmatched)} in all)" if len(unmatched) > 5
                                                                 else "")
            hint = ""
            if any(k.startswith(("unet.", "text_encoder.", "lora_unet.", "transformer.")) for k in unmatched):
                hint = " (dotted diffusers/PEFT keys: A1111 reads kohya-format files only)"
            raise NetworkError(f"{path}: {len(unmatched)} key(s) match no module of this {self.family_name} model: "
                               f"{shown}{hint}; "
                               "A1111 drops such keys silently, inpaintlab refuses the file")
        modules: list = []
        fused: dict[str, dict[str, tuple[ModuleWeights, str]]] = {}
        for mw in groups.values():
            kind = detect_type(mw)
            target = module_kind(mw.module)
            if target == "attention":  # filed as `…_attn_q_proj` etc. (names.match_key)
                attention = mw.name[:-len("_q_proj")]
                if attention not in fused:
                    fused[attention] = {}
                    modules.append(FusedQKV(attention, mw.module, []))
                fused[attention][mw.name[-6]] = (mw, kind)
                continue
            if target == "other":
                raise NetworkError(f"{path}: key {mw.key!r} targets {mw.name}, a {type(mw.module).__name__}, "
                                   "which A1111 never patches (Linear, Conv2d, GroupNorm and LayerNorm only)")
            modules.append((mw, kind))
        for unit in modules:
            if isinstance(unit, FusedQKV):
                parts = fused[unit.name]
                missing = [f"{unit.name}_{p}_proj" for p in "qkv" if p not in parts]
                if f"{unit.name}_out_proj" not in groups:
                    missing.append(f"{unit.name}_out_proj")
                if missing:
                    raise NetworkError(f"{path}: the fused attention {unit.name} has no {', '.join(missing)} in this "
                                       "file; A1111 changes such a layer only when q, k, v and out_proj are all present")
                unit.parts = [parts[p] for p in "qkv"]
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
                    for unit in prep.modules:
                        if isinstance(unit, FusedQKV):
                            self._merge_qkv(prep.file, unit, net)
                        else:
                            self._merge(prep.file, *unit, net)
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

    def _keep(self, name: str, module: nn.Module, attr: str = "weight") -> None:
        if name not in self._backup:
            bias = getattr(module, "bias", None) if attr == "weight" else None
            self._backup[name] = (module, attr, getattr(module, attr).detach().to("cpu", copy=True),
                                  None if bias is None else bias.detach().to("cpu", copy=True))

    def _merge_qkv(self, file: NetworkFile, unit: FusedQKV, net: ActiveNetwork) -> None:
        """A1111's MultiheadAttention branch: each of q, k, v computes its delta against the whole `in_proj_weight`
        and the three are stacked; their extra biases are not used (out_proj is merged as the Linear it is)."""
        self._keep(unit.name, unit.module, "in_proj_weight")
        W = unit.module.in_proj_weight
        deltas = []
        for mw, kind in unit.parts:
            try:
                deltas.append(calc_updown(mw, kind, W, net.te, net.unet, net.dyn)[0])
            except (RuntimeError, IndexError, KeyError) as e:
                raise NetworkError(f"{file.path}: {kind} module {mw.key!r} does not fit {mw.name} "
                                   f"(one third of in_proj_weight {list(W.shape)}): {e}") from e
        try:
            updown = torch.vstack(deltas)
        except RuntimeError as e:
            raise NetworkError(f"{file.path}: the q/k/v deltas of {unit.name} do not stack: {e}") from e
        if updown.shape != W.shape:
            raise NetworkError(f"{file.path}: the q/k/v modules of {unit.name} give a delta of shape "
                               f"{list(updown.shape)} for in_proj_weight of shape {list(W.shape)}")
        W.copy_((W.to(updown.dtype) + updown).to(W.dtype))

    def _merge(self, file: NetworkFile, mw: ModuleWeights, kind: str, net: ActiveNetwork) -> None:
        module = mw.module
        self._keep(mw.name, module)
        W = module.weight
        try:
            updown, ex_bias = calc_updown(mw, kind, W, net.te, net.unet, net.dyn)
        except (RuntimeError, IndexError, KeyError) as e:
            raise NetworkError(f"{file.path}: {kind} module {mw.key!r} does not fit {mw.name} "
                               f"(weight {list(W.shape)}){_other_architecture(mw, W, self.family)}: {e}") from e
        if W.ndim == 4 and W.shape[1] == 9:
            # A 4-channel network on the 9-channel inpainting conv_in: zero-pad the input channels 4 → 9 (A1111).
            updown = torch.nn.functional.pad(updown, (0, 0, 0, 0, 0, 5))
        if not _fits(updown.shape, W.shape):
            raise NetworkError(f"{file.path}: {kind} module {mw.key!r} gives a delta of shape {list(updown.shape)} "
                               f"for {mw.name} of shape {list(W.shape)}{_other_architecture(mw, W, self.family)}")
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
            for module, attr, weight, bias in self._backup.values():
                getattr(module, attr).copy_(weight)
                if bias is None:
                    if getattr(module, "bias", None) is not None:
                        module.bias = None
                else:
                    module.bias.copy_(bias)
        self._key, self.active, self.files = (), [], []


# Text widths of other Stable Diffusion versions that no layer of the loaded family has, so they show up in their
# networks' shapes.
_OTHER_WIDTHS = {
    "sd1": {1024: "SD2.x (OpenCLIP-H, 1024 wide)", 2048: "SDXL (2048-wide cross-attention context)"},
    "sd2": {768: "SD1.x (CLIP-L, 768 wide)", 2048: "SDXL (2048-wide cross-attention context)"},
    "sdxl": {1024: "SD2.x (OpenCLIP-H, 1024 wide)"},
}


def _other_architecture(mw: ModuleWeights, W: torch.Tensor, family: str) -> str:
    widths = {d for t in mw.w.values() for d in t.shape} - set(W.shape)
    hits = [name for width, name in _OTHER_WIDTHS.get(family, {}).items() if width in widths]
    return f"; the file's shapes look like a network for {' or '.join(hits)}" if hits else ""


def _fits(delta: torch.Size, target: torch.Size) -> bool:
    """Whether `target + delta` keeps target's shape (A1111 adds with broadcasting)."""
    try:
        return torch.broadcast_shapes(delta, target) == target
    except RuntimeError:
        return False
