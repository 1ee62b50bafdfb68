"""Network module types and their weight deltas, as A1111 v1.10's built-in Lora extension computes them.

Each file key group (one model module) is given the first type whose keys it holds, in A1111's order: LoRA/LoCon,
LoHa, IA3, LoKr, Full, Norm, GLoRA, OFT/BOFT. A type returns `(ΔW, output shape, extra bias)`; `finalize` then applies,
in A1111's order: the optional `bias` key, the reshape, the extra bias × multiplier, × scale (`scale` key, else
alpha/rank, else 1), DoRA re-normalisation (`dora_scale`), × multiplier.

dtypes (A1111 v1.10): LoRA up/down/mid are cast to the model's dtype when loaded (A1111 stores them in
`devices.dtype`), so `up @ down` runs in it; every other type computes in the file's dtype.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

import torch
from torch import nn

from ..kernels import GroupNorm


class NetworkError(ValueError):
    """A network file or key that cannot be applied to this model; the message names the file and key."""


@dataclass
class ModuleWeights:
    """The tensors of one network module (file keys after the first '.') and the model module they target."""

    key: str                          # the file's module key (before the first '.')
    name: str                         # compvis name of the target (`diffusion_model_…`, `transformer_text_model_…`)
    module: nn.Module
    w: dict[str, torch.Tensor] = field(default_factory=dict)


def module_kind(module: nn.Module) -> str:
    """'linear', 'conv', 'norm', 'attention' or 'other': the layer types A1111 patches (Linear, Conv2d, GroupNorm,
    LayerNorm, and MultiheadAttention, whose fused q/k/v `in_proj_weight` our OpenCLIP attention keeps)."""
    if isinstance(getattr(module, "in_proj_weight", None), torch.Tensor):
        return "attention"
    if isinstance(module, nn.Linear):
        return "linear"
    if isinstance(module, nn.Conv2d):
        return "conv"
    if isinstance(module, (nn.GroupNorm, nn.LayerNorm, GroupNorm)):
        return "norm"
    return "other"


def multiplier_for(name: str, te: float, unet: float) -> float:
    # A1111: the text-encoder multiplier when 'transformer' is in the first 20 characters of the module name.
    return te if "transformer" in name[:20] else unet


# --------------------------------------------------------------------------------------------- shared helpers


def _cp_weight(t: torch.Tensor, wa: torch.Tensor, wb: torch.Tensor) -> torch.Tensor:
    """Tucker/CP rebuild used by LoHa and LoKr: t contracted with wb on dim 1, then with wa on dim 0."""
    temp = torch.einsum("ijkl,jr->irkl", t, wb)
    return torch.einsum("ijkl,ir->rjkl", temp, wa)


def _conventional(up: torch.Tensor, down: torch.Tensor, shape, dyn: int | None = None) -> torch.Tensor:
    up = up.reshape(up.size(0), -1)
    down = down.reshape(down.size(0), -1)
    if dyn is not None:
        up, down = up[:, :dyn], down[:dyn, :]
    return (up @ down).reshape(shape)


def _cp_lora(up: torch.Tensor, down: torch.Tensor, mid: torch.Tensor) -> torch.Tensor:
    up = up.reshape(up.size(0), -1)
    down = down.reshape(down.size(0), -1)
    return torch.einsum("nmkl,in,mj->ijkl", mid, up, down)


def _weight_of(module: nn.Module) -> torch.Tensor:
    return module.in_proj_weight if module_kind(module) == "attention" else module.weight


def _lora_holder(mw: ModuleWeights, part: str, weight: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """A LoRA tensor as A1111 holds it: reshaped to the Linear/Conv2d it loads into, cast to the model's dtype."""
    kind, module = module_kind(mw.module), mw.module
    if kind in ("linear", "attention"):  # A1111 holds LoRA tensors of a MultiheadAttention in Linear layers too
        shape = (weight.shape[0], weight[0].numel())
    elif kind == "conv" and part == "lora_down.weight":
        if weight.ndim == 2:
            weight = weight.reshape(weight.shape[0], -1, 1, 1)
        kernel = tuple(module.kernel_size) if weight.shape[2] != 1 or weight.shape[3] != 1 else (1, 1)
        shape = (weight.shape[0], weight.shape[1], *kernel)
    elif kind == "conv" and part == "lora_mid.weight":
        shape = (weight.shape[0], weight.shape[1], *module.kernel_size)
    elif kind == "conv" and part == "lora_up.weight":
        shape = (weight.shape[0], weight.shape[1], 1, 1)
    else:
        raise NetworkError(f"{mw.key}: a LoRA matched {mw.name}, a {type(module).__name__}; "
                           "LoRA applies to Linear and Conv2d layers only")
    if tuple(weight.shape) != shape:
        if weight.numel() != torch.Size(shape).numel():
            raise NetworkError(f"{mw.key}.{part}: shape {list(weight.shape)} does not fit {mw.name} "
                               f"({type(module).__name__}, weight {list(_weight_of(module).shape)})")
        weight = weight.reshape(shape)
    return weight.to(dtype)


# ------------------------------------------------------------------------------------------------- the types
# Each takes (module weights, current layer weight W, dyn) and returns (ΔW, output_shape, extra bias, rank or None).


def _lora(mw: ModuleWeights, W: torch.Tensor, dyn: int | None):
    w = mw.w
    up = _lora_holder(mw, "lora_up.weight", w["lora_up.weight"], W.dtype).to(W.device)
    down = _lora_holder(mw, "lora_down.weight", w["lora_down.weight"], W.dtype).to(W.device)
    shape = [up.size(0), down.size(1)]
    if "lora_mid.weight" in w:
        mid = _lora_holder(mw, "lora_mid.weight", w["lora_mid.weight"], W.dtype).to(W.device)
        updown = _cp_lora(up, down, mid)
        shape += list(mid.shape[2:])
    else:
        if down.ndim == 4:
            shape += list(down.shape[2:])
        updown = _conventional(up, down, shape, dyn)
    return updown, shape, None, w["lora_down.weight"].shape[0]


def _loha(mw: ModuleWeights, W: torch.Tensor, dyn: int | None):
    w = {k: v.to(W.device) for k, v in mw.w.items()}
    w1a, w1b, w2a, w2b = w["hada_w1_a"], w["hada_w1_b"], w["hada_w2_a"], w["hada_w2_b"]
    shape = [w1a.size(0), w1b.size(1)]
    if "hada_t1" in w:
        shape = [w1a.size(1), w1b.size(1)] + list(w["hada_t1"].shape[2:])
        updown1 = _cp_weight(w["hada_t1"], w1a, w1b)
    else:
        if w1b.ndim == 4:
            shape += list(w1b.shape[2:])
        updown1 = _conventional(w1a, w1b, shape)
    updown2 = _cp_weight(w["hada_t2"], w2a, w2b) if "hada_t2" in w else _conventional(w2a, w2b, shape)
    return updown1 * updown2, shape, None, mw.w["hada_w1_b"].shape[0]


def _ia3(mw: ModuleWeights, W: torch.Tensor, dyn: int | None):
    scale = mw.w["weight"].to(W.device)
    on_input = mw.w["on_input"].item() if "on_input" in mw.w else _missing(mw, "on_input")
    shape = [scale.size(0), W.size(1)]
    if on_input:
        shape.reverse()
    else:
        scale = scale.reshape(-1, 1)
    return W * scale, shape, None, None


def _lokr(mw: ModuleWeights, W: torch.Tensor, dyn: int | None):
    w = {k: v.to(W.device) for k, v in mw.w.items()}
    w1 = w["lokr_w1"] if "lokr_w1" in w else w["lokr_w1_a"] @ w["lokr_w1_b"]
    if "lokr_w2" in w:
        w2 = w["lokr_w2"]
    elif "lokr_t2" not in w:
        w2 = w["lokr_w2_a"] @ w["lokr_w2_b"]
    else:
        w2 = _cp_weight(w["lokr_t2"], w["lokr_w2_a"], w["lokr_w2_b"])
    shape = [w1.size(0) * w2.size(0), w1.size(1) * w2.size(1)]
    if W.ndim == 4:
        shape = list(W.shape)
    if w2.ndim == 4:
        w1 = w1.unsqueeze(2).unsqueeze(2)
    updown = torch.kron(w1, w2.contiguous()).reshape(shape)
    rank = None
    if "lokr_w1_b" in mw.w:
        rank = mw.w["lokr_w1_b"].shape[0]
    if "lokr_w2_b" in mw.w:
        rank = mw.w["lokr_w2_b"].shape[0]
    return updown, shape, None, rank


def _full(mw: ModuleWeights, W: torch.Tensor, dyn: int | None):
    diff = mw.w["diff"].to(W.device)
    ex_bias = mw.w["diff_b"].to(W.device) if "diff_b" in mw.w else None
    return diff, list(diff.shape), ex_bias, None


def _norm(mw: ModuleWeights, W: torch.Tensor, dyn: int | None):
    w_norm = mw.w["w_norm"].to(W.device)
    ex_bias = mw.w["b_norm"].to(W.device) if mw.w.get("b_norm") is not None else None
    return w_norm, list(w_norm.shape), ex_bias, None


def _glora(mw: ModuleWeights, W: torch.Tensor, dyn: int | None):
    w = {k: v.to(W.device) for k, v in mw.w.items()}
    w1a, w1b, w2a, w2b = w["a1.weight"], w["b1.weight"], w["a2.weight"], w["b2.weight"]
    updown = (w2b @ w1b) + ((W.to(w1a.dtype) @ w2a) @ w1a)
    return updown, [w1a.size(0), w1b.size(1)], None, None


def _oft(mw: ModuleWeights, W: torch.Tensor, dyn: int | None):
    """OFT (kohya / new LyCORIS `oft_blocks`, old LyCORIS `oft_diag`) and BOFT (4-D `oft_blocks`): ΔW = R·W − W."""
    kind = module_kind(mw.module)
    if kind not in ("linear", "conv"):
        raise NetworkError(f"{mw.key}: OFT matched {mw.name}, a {type(mw.module).__name__}; "
                           "OFT applies to Linear and Conv2d layers only")
    out_dim = W.shape[0]
    is_r = "oft_blocks" not in mw.w
    blocks = mw.w["oft_blocks"] if not is_r else mw.w["oft_diag"]
    alpha = mw.w.get("alpha") if not is_r else None
    is_boft = blocks.ndim == 4
    if is_r:
        block_size = blocks.shape[1]
        num_blocks = out_dim // block_size
    elif is_boft:
        num_blocks, block_size = blocks.shape[1], blocks.shape[2]
    else:
        num_blocks = blocks.shape[0]
        block_size = out_dim // num_blocks
    blocks = blocks.to(W.device)
    eye = torch.eye(block_size, device=W.device)
    if not is_r:
        q = blocks - blocks.transpose(-1, -2)  # skew-symmetric, so the Cayley transform is orthogonal
        constraint = 0 if alpha is None else alpha * out_dim
        if constraint != 0:
            norm = torch.norm(q.flatten())
            clamped = torch.clamp(norm, max=constraint.to(W.device))
            q = q * ((clamped + 1e-8) / (norm + 1e-8))
        blocks = torch.matmul(eye + q, (eye - q).float().inverse())
    R = blocks.to(W.device)
    rest = W.shape[1:]
    if not is_boft:
        merged = torch.einsum("knm,kn...->km...", R, W.reshape(num_blocks, block_size, *rest))
        merged = merged.reshape(out_dim, *rest)
    else:
        half = block_size // 2
        merged = W
        for i in range(blocks.shape[0]):
            factor = R[i]
            if i == 0:
                factor = factor * 1.0 + (1 - 1.0) * eye  # A1111's unused strength blend, kept for its rounding
            k = 2 ** i * half
            merged = merged.reshape(-1, 2, k, *rest).transpose(1, 2).reshape(-1, block_size, *rest)  # butterfly order
            merged = torch.einsum("bij,bj...->bi...", factor, merged)
            merged = merged.reshape(-1, k, 2, *rest).transpose(1, 2).reshape(out_dim, *rest)
    if "rescale" in mw.w:
        merged = mw.w["rescale"].reshape(-1, *[1] * (W.ndim - 1)).to(merged) * merged
    return merged.to(W.device) - W.to(merged.dtype), list(W.shape), None, None


def _missing(mw: ModuleWeights, part: str):
    raise NetworkError(f"{mw.key}: key {mw.key}.{part} is missing")


def _has(*parts: str) -> Callable[[dict], bool]:
    return lambda w: all(p in w for p in parts)


# A1111 v1.10's order: the first type whose keys are all present wins.
MODULE_TYPES: tuple[tuple[str, Callable[[dict], bool], Callable], ...] = (
    ("LoRA", _has("lora_up.weight", "lora_down.weight"), _lora),
    ("LoHa", _has("hada_w1_a", "hada_w1_b", "hada_w2_a", "hada_w2_b"), _loha),
    ("IA3", _has("weight"), _ia3),
    ("LoKr", lambda w: ("lokr_w1" in w or ("lokr_w1_a" in w and "lokr_w1_b" in w))
     and ("lokr_w2" in w or ("lokr_w2_a" in w and "lokr_w2_b" in w)), _lokr),
    ("Full", _has("diff"), _full),
    ("Norm", _has("w_norm", "b_norm"), _norm),
    ("GLoRA", _has("a1.weight", "a2.weight", "alpha", "b1.weight", "b2.weight"), _glora),
    ("OFT", lambda w: "oft_blocks" in w or "oft_diag" in w, _oft),
)


def detect_type(mw: ModuleWeights) -> str:
    """The module type's name; `lora_A`/`lora_B` pairs are renamed to down/up first (and, as in A1111, their other
    keys — alpha, dora_scale — dropped)."""
    w = mw.w
    if not _has("lora_up.weight", "lora_down.weight")(w) and _has("lora_A.weight", "lora_B.weight")(w):
        mw.w = {"lora_up.weight": w["lora_B.weight"], "lora_down.weight": w["lora_A.weight"]}
    for name, accepts, _ in MODULE_TYPES:
        if accepts(mw.w):
            return name
    raise NetworkError(f"{mw.key}: no network type accepts the keys {', '.join(sorted(w))} "
                       f"(known types: {', '.join(t[0] for t in MODULE_TYPES)})")


_COMPUTE = {name: compute for name, _, compute in MODULE_TYPES}


def calc_updown(mw: ModuleWeights, kind: str, W: torch.Tensor, te: float, unet: float,
                dyn: int | None = None) -> tuple[torch.Tensor, torch.Tensor | None]:
    """(ΔW × scale × multiplier, extra bias × multiplier) for the layer weight W (which already holds any earlier
    network's delta), in A1111 v1.10's order of operations."""
    updown, shape, ex_bias, rank = _COMPUTE[kind](mw, W, dyn)
    w = mw.w
    multiplier = multiplier_for(mw.name, te, unet)
    if "bias" in w:  # LyCORIS's delta bias: added to ΔW itself, in ΔW's layout
        bias = w["bias"]
        updown = updown.reshape(bias.shape)
        updown += bias.to(W.device, dtype=updown.dtype)
        updown = updown.reshape(shape)
    if len(shape) == 4:
        updown = updown.reshape(shape)
    if W.numel() == updown.numel():
        updown = updown.reshape(W.shape)
    if ex_bias is not None:
        ex_bias = ex_bias * multiplier
    updown = updown * _scale(w, kind, rank)
    if "dora_scale" in w:
        updown = _weight_decompose(updown, W, w["dora_scale"])
    return updown * multiplier, ex_bias


def _scale(w: dict[str, torch.Tensor], kind: str, rank: int | None) -> float:
    if kind == "OFT":
        return 1.0
    if "scale" in w:
        return w["scale"].item()
    if rank is not None and "alpha" in w:
        return w["alpha"].item() / rank
    return 1.0


def _weight_decompose(updown: torch.Tensor, W: torch.Tensor, dora_scale: torch.Tensor) -> torch.Tensor:
    """DoRA: W' = W + ΔW re-normalised per input channel (norm over every other axis) to `dora_scale`; returns W' − W."""
    W = W.to(updown.dtype)
    dora_scale = dora_scale.to(device=W.device, dtype=updown.dtype)
    merged = updown.to(W.device) + W
    in_channels = merged.shape[1]
    norm = merged.transpose(0, 1).reshape(in_channels, -1).norm(dim=1, keepdim=True)
    norm = norm.reshape(in_channels, *[1] * (W.ndim - 1)).transpose(0, 1)  # [1, in, 1, ...]
    return merged * (dora_scale / norm) - W
