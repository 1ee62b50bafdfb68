"""GroupNorm(+SiLU) for inference: torch reference, two Triton kernels and their launcher.

What is fused
    y = silu?((x - mean_g) * rstd_g * weight[c] + bias[c]) in one pass over x after the statistics pass, with the
    statistics in fp32 whatever the input dtype (ldm's GroupNorm32 upcasts the same way) and the output in x's dtype.
    The SiLU replaces the separate activation that follows most GroupNorms in ldm's ResBlocks and the VAE.

Algorithm (split statistics, so a batch of 1 or 2 still fills the GPU)
    A group's elements are cut into tiles of BLOCK_C channels x BLOCK_HW positions; the tiles of one group, in
    (channel block, position) order, are split into NUM_CHUNKS chunks of TILES_PER_CHUNK tiles.
    1. `_group_norm_stats_kernel`, grid (B*G, NUM_CHUNKS): each program reads its chunk once and writes the chunk's
       (count, mean, M2) to a small fp32 workspace [3, B*G, NUM_CHUNKS]. Inside a chunk every tile is reduced
       exactly (mean, then the sum of squared deviations from that mean, from registers) and merged into the
       running statistics with Chan et al.'s pairwise update, so a large mean against a small spread (x + 100)
       loses nothing to cancellation, unlike E[x^2] - E[x]^2. Values are taken relative to a pivot, the group's
       first element, so even the fp32 sums behind the means stay of the order of the spread.
    2. `_group_norm_apply_kernel`, same grid: each program merges its group's NUM_CHUNKS partials (the parallel form
       of Chan's formula, from L2), then normalises its chunk: y = ((x - pivot) - mean) * scale[c] + bias[c] with
       scale = weight * rstd, optional SiLU, store.
    One program per (batch, group), the usual design, gives only 64 programs for the UNet and 32 for the VAE on a
    132-SM H100 (performance.md §1.3, §4.3); here the launcher aims at ~8 programs per SM, shrinking tiles for
    small HW, so every SD1.5 shape launches >= 640 programs (>= 256 channels_last).

Constraints
    x: [B, C, *spatial] with fp32, fp16 or bf16 elements; the spatial dims must merge into one strided axis, which
    holds for contiguous (NCHW) and channels_last tensors (other layouts raise; call .contiguous()). C % num_groups
    == 0. weight/bias: None or [C] on x's device, any float dtype. Offsets within one sample must fit in int32 (the
    batch offset is 64-bit). y keeps x's memory format. Under TRITON_INTERPRET=1 the kernels run on CPU tensors.

Memory traffic (the model behind the benchmark's GB/s)
    The kernels read x twice (statistics, then apply) and write y once: 3 * numel * itemsize bytes actually
    moved, plus a negligible workspace. The benchmark reports GB/s against the algorithmic minimum of
    2 * numel * itemsize (read x once, write y once), the count that performance.md §2 and goal 4 use, so its
    "% of HBM peak" is directly comparable to the goal; the second read of UNet-sized tensors (<= 16 MB) usually
    hits the 50 MB L2, that of the large VAE-decoder tensors does not.

Tested on
    No GPU yet: CPU under Triton's interpreter (correctness only). The sm_90 code of every SD1.5 launch is checked
    ahead of time by benchmarks/kernel_report.py (Triton 3.9): 31-47 registers, no spills, >= 32 resident warps
    per SM, 128-bit loads wherever a thread holds >= 8 fp16 elements of a row. Timings: bench_group_norm.py.

Caveats
    channels_last tiles pad the channels of a group to a power of two (10 -> 16 for C = 320), wasting lanes, and
    their rows are only C/G elements long, so they coalesce worse than NCHW. The group count (and so the mean
    weights) is carried in fp32: exact up to 2^24 elements per chunk. Two launches plus a small workspace
    allocation per call: the 8x8 UNet GroupNorms (~0.3 MB) are bound by launch latency, not bandwidth.
"""
from __future__ import annotations

import functools
import itertools
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from .dispatch import resolve

try:
    import triton
    import triton.language as tl
except ImportError:  # torch-only installs keep the reference path; dispatch refuses backend="triton"
    triton = tl = None


def _jit(**kwargs):
    """triton.jit(**kwargs), or no decoration when triton is missing."""
    return (lambda fn: fn) if triton is None else triton.jit(**kwargs)


# Scalars whose divisibility by 16 (or equality to 1) tells the compiler nothing useful: not specialising on them
# keeps one compiled variant per tile shape instead of one per shape. HW and the strides stay specialised, since
# their divisibility is what makes rows 16-byte aligned and the loads 128-bit.
_NO_SPECIALIZE = ["G", "CG", "TILES_HW", "TILES_PER_CHUNK", "NUM_CHUNKS"]


DTYPES = (torch.float32, torch.float16, torch.bfloat16)
MAX_TILE = 2048  # elements per tile: 16 per thread at 4 warps, i.e. two 16-byte loads per thread in fp16
MAX_CHUNKS = 1024  # the apply kernel merges up to this many partials per group in one vector
PROGRAMS_PER_SM = 8


def group_norm_ref(x: torch.Tensor, num_groups: int, weight: torch.Tensor | None, bias: torch.Tensor | None,
                   eps: float, silu: bool = False) -> torch.Tensor:
    """GroupNorm in fp32 (ldm GroupNorm32), cast back to x's dtype, optionally followed by SiLU.

    Traffic in eager torch: the upcast copy, group_norm and SiLU each read and write the tensor.
    """
    y = F.group_norm(x.float(), num_groups, None if weight is None else weight.float(),
                     None if bias is None else bias.float(), eps)
    if silu:
        y = F.silu(y)
    return y.to(x.dtype)


@_jit(do_not_specialize=_NO_SPECIALIZE)
def _group_norm_stats_kernel(
    x_ptr,  # [B, C, HW] input (strided), fp32/fp16/bf16
    part_ptr,  # [3, B*G, NUM_CHUNKS] fp32 workspace: count, mean - pivot, M2 per chunk
    HW,  # spatial size (H*W)
    G,  # groups
    CG,  # channels per group
    stride_xb, stride_xc, stride_xhw,  # element strides of x over batch, channel, merged spatial axis
    TILES_HW,  # cdiv(HW, BLOCK_HW): tiles per channel block
    TILES_PER_CHUNK,  # tiles of the group handled by one program
    NUM_CHUNKS,  # programs per group (grid axis 1)
    BLOCK_C: tl.constexpr,  # channels per tile
    BLOCK_HW: tl.constexpr,  # spatial positions per tile
):
    pid_bg = tl.program_id(0)
    chunk = tl.program_id(1)
    b = pid_bg // G
    g = pid_bg % G
    x_base = x_ptr + b.to(tl.int64) * stride_xb + (g * CG).to(tl.int64) * stride_xc
    # every program of the group subtracts the group's first element, so sums stay small when mean >> spread
    pivot = tl.load(x_base).to(tl.float32)
    offs_c = tl.arange(0, BLOCK_C)
    offs_hw = tl.arange(0, BLOCK_HW)
    num_tiles = (CG + BLOCK_C - 1) // BLOCK_C * TILES_HW
    t_start = chunk * TILES_PER_CHUNK
    t_stop = tl.minimum(t_start + TILES_PER_CHUNK, num_tiles)

    count = 0.0
    mean = 0.0
    m2 = 0.0
    for t in range(t_start, t_stop):
        c0 = (t // TILES_HW) * BLOCK_C
        hw0 = (t % TILES_HW) * BLOCK_HW
        cc = c0 + offs_c
        hh = hw0 + offs_hw
        mask = (cc < CG)[:, None] & (hh < HW)[None, :]
        x = tl.load(x_base + cc[:, None] * stride_xc + hh[None, :] * stride_xhw, mask=mask, other=0.0)
        x = tl.where(mask, x.to(tl.float32) - pivot, 0.0)
        # exact statistics of this tile from registers: its mean, then squared deviations from it
        n_t = (tl.minimum(CG - c0, BLOCK_C) * tl.minimum(HW - hw0, BLOCK_HW)).to(tl.float32)
        mean_t = tl.sum(x) / n_t
        d = tl.where(mask, x - mean_t, 0.0)
        m2_t = tl.sum(d * d)
        # Chan et al. pairwise merge of (count, mean, M2) with the tile's
        n_new = count + n_t
        delta = mean_t - mean
        mean += delta * (n_t / n_new)
        m2 += m2_t + delta * delta * (count * n_t / n_new)
        count = n_new

    part = part_ptr + pid_bg * NUM_CHUNKS + chunk
    plane = tl.num_programs(0) * NUM_CHUNKS
    tl.store(part, count)
    tl.store(part + plane, mean)
    tl.store(part + 2 * plane, m2)


@_jit(do_not_specialize=_NO_SPECIALIZE)
def _group_norm_apply_kernel(
    x_ptr,  # [B, C, HW] input (strided)
    y_ptr,  # [B, C, HW] output (strided), x's dtype
    w_ptr,  # [C] weight, or any pointer when HAS_WEIGHT is False
    b_ptr,  # [C] bias, or any pointer when HAS_BIAS is False
    part_ptr,  # [3, B*G, NUM_CHUNKS] fp32 partials written by _group_norm_stats_kernel
    HW, G, CG,
    stride_xb, stride_xc, stride_xhw,
    stride_yb, stride_yc, stride_yhw,
    TILES_HW, TILES_PER_CHUNK, NUM_CHUNKS,
    eps,  # fp32
    HAS_WEIGHT: tl.constexpr,
    HAS_BIAS: tl.constexpr,
    SILU: tl.constexpr,
    BLOCK_C: tl.constexpr,
    BLOCK_HW: tl.constexpr,
    BLOCK_CHUNKS: tl.constexpr,  # power of two >= NUM_CHUNKS
):
    pid_bg = tl.program_id(0)
    chunk = tl.program_id(1)
    b = pid_bg // G
    g = pid_bg % G

    # merge the group's partials: mean = sum(n_k mean_k) / n, M2 = sum(M2_k + n_k (mean_k - mean)^2)
    k = tl.arange(0, BLOCK_CHUNKS)
    k_mask = k < NUM_CHUNKS
    part = part_ptr + pid_bg * NUM_CHUNKS + k
    plane = tl.num_programs(0) * NUM_CHUNKS
    n_k = tl.load(part, mask=k_mask, other=0.0)
    mean_k = tl.load(part + plane, mask=k_mask, other=0.0)
    m2_k = tl.load(part + 2 * plane, mask=k_mask, other=0.0)
    n = tl.sum(n_k)
    mean = tl.sum(n_k * mean_k) / n  # relative to the pivot, like the partials
    dev = mean_k - mean
    var = tl.maximum(tl.sum(m2_k + n_k * dev * dev) / n, 0.0)
    rstd = 1.0 / tl.sqrt_rn(var + eps)

    x_base = x_ptr + b.to(tl.int64) * stride_xb + (g * CG).to(tl.int64) * stride_xc
    pivot = tl.load(x_base).to(tl.float32)  # the statistics kernel's pivot
    y_base = y_ptr + b.to(tl.int64) * stride_yb + (g * CG).to(tl.int64) * stride_yc
    offs_c = tl.arange(0, BLOCK_C)
    offs_hw = tl.arange(0, BLOCK_HW)
    num_tiles = (CG + BLOCK_C - 1) // BLOCK_C * TILES_HW
    t_start = chunk * TILES_PER_CHUNK
    t_stop = tl.minimum(t_start + TILES_PER_CHUNK, num_tiles)
    for t in range(t_start, t_stop):
        c0 = (t // TILES_HW) * BLOCK_C
        hw0 = (t % TILES_HW) * BLOCK_HW
        cc = c0 + offs_c
        hh = hw0 + offs_hw
        c_mask = cc < CG
        mask = c_mask[:, None] & (hh < HW)[None, :]
        if HAS_WEIGHT:
            scale = tl.load(w_ptr + g * CG + cc, mask=c_mask, other=0.0).to(tl.float32) * rstd
        else:
            scale = tl.zeros([BLOCK_C], dtype=tl.float32) + rstd
        if HAS_BIAS:
            shift = tl.load(b_ptr + g * CG + cc, mask=c_mask, other=0.0).to(tl.float32)
        else:
            shift = tl.zeros([BLOCK_C], dtype=tl.float32)
        x = tl.load(x_base + cc[:, None] * stride_xc + hh[None, :] * stride_xhw, mask=mask, other=0.0)
        # (x - pivot) is exact near the mean; folding the mean into a bias instead would cost ulp(mean) accuracy
        y = ((x.to(tl.float32) - pivot) - mean) * scale[:, None] + shift[:, None]
        if SILU:
            y = y / (1.0 + tl.exp(-y))  # SiLU; exp overflows to inf for y < -88, giving -0
        tl.store(y_base + cc[:, None] * stride_yc + hh[None, :] * stride_yhw, y.to(y_ptr.dtype.element_ty), mask=mask)


@dataclass(frozen=True)
class LaunchParams:
    """Tile and grid choice for one GroupNorm call (see `launch_params`)."""

    block_c: int
    block_hw: int
    tiles_hw: int
    tiles_per_chunk: int
    num_chunks: int
    block_chunks: int
    num_warps: int


def _next_pow2(n: int) -> int:
    return 1 << max(0, int(n) - 1).bit_length()


def _cdiv(a: int, b: int) -> int:
    return -(-a // b)


def launch_params(batch: int, channels: int, hw: int, num_groups: int, *, channels_last: bool,
                  target_programs: int) -> LaunchParams:
    """Pick tile sizes and the number of chunks per group from the shape.

    NCHW: positions are contiguous, so BLOCK_HW takes up to MAX_TILE of them and BLOCK_C packs several channels
    when HW is small, choosing the largest power of two that pads the group's channels by at most 1/8.
    channels_last: a group's channels are contiguous, so BLOCK_C covers all of them (padded to a power of two).
    Chunks: enough that batch * groups * chunks reaches `target_programs`, never more than the group has tiles;
    when a group has too few tiles for that (HW of 64-256), the tiles shrink first.
    """
    cg = channels // num_groups
    if channels_last:
        block_c = min(_next_pow2(cg), MAX_TILE)
        block_hw = min(max(MAX_TILE // block_c, 1), _next_pow2(hw))
    else:
        block_hw = min(_next_pow2(hw), MAX_TILE)
        block_c = min(max(MAX_TILE // block_hw, 1), _next_pow2(cg))
        while block_c > 1 and 8 * (_cdiv(cg, block_c) * block_c - cg) > cg:
            block_c //= 2
    want = min(max(1, _cdiv(target_programs, batch * num_groups)), MAX_CHUNKS)
    # too few tiles to split (small HW): smaller tiles, down to 256 contiguous positions or 16 channels_last rows
    while _cdiv(cg, block_c) * _cdiv(hw, block_hw) < want:
        if not channels_last and block_c > 1:
            block_c //= 2
        elif block_hw > (16 if channels_last else 256):
            block_hw //= 2
        else:
            break
    tiles_hw = _cdiv(hw, block_hw)
    num_tiles = _cdiv(cg, block_c) * tiles_hw
    want = min(want, num_tiles)
    tiles_per_chunk = _cdiv(num_tiles, want)
    num_chunks = _cdiv(num_tiles, tiles_per_chunk)
    tile = block_c * block_hw
    num_warps = 4 if tile >= 1024 else max(1, tile // 256)
    block_chunks = max(32, _next_pow2(num_chunks))  # a floor of 32 keeps the number of compiled variants small
    return LaunchParams(block_c, block_hw, tiles_hw, tiles_per_chunk, num_chunks, block_chunks, num_warps)


@functools.cache
def _num_sms(device_index: int) -> int:
    return torch.cuda.get_device_properties(device_index).multi_processor_count


def _strides_3d(t: torch.Tensor, name: str) -> tuple[int, int, int]:
    """(batch, channel, spatial) element strides of [B, C, *spatial] with the spatial dims merged into one axis."""
    dims = [d for d in range(2, t.dim()) if t.shape[d] > 1]
    for outer, inner in itertools.pairwise(dims):
        if t.stride(outer) != t.stride(inner) * t.shape[inner]:
            raise ValueError(f"group_norm: the spatial dims of {name} (shape {tuple(t.shape)}, stride {t.stride()}) "
                             "cannot be merged into one axis; pass a contiguous or channels_last tensor")
    return t.stride(0), t.stride(1), (t.stride(dims[-1]) if dims else 1)


def _check_affine(p: torch.Tensor | None, name: str, x: torch.Tensor) -> None:
    if p is None:
        return
    if p.shape != (x.shape[1],):
        raise ValueError(f"group_norm: {name} has shape {tuple(p.shape)}, expected ({x.shape[1]},) "
                         f"for x {tuple(x.shape)}")
    if p.device != x.device:
        raise ValueError(f"group_norm: {name} is on {p.device} but x is on {x.device}")
    if p.dtype not in DTYPES:
        raise TypeError(f"group_norm: {name} dtype {p.dtype} unsupported; expected fp32, fp16 or bf16")


def group_norm_triton(x: torch.Tensor, num_groups: int, weight: torch.Tensor | None, bias: torch.Tensor | None,
                      eps: float, *, silu: bool = False, out: torch.Tensor | None = None,
                      workspace: torch.Tensor | None = None, target_programs: int | None = None) -> torch.Tensor:
    """Run the two Triton kernels (no backend resolution; see `group_norm`).

    out: optional preallocated output (x's shape and dtype, not sharing memory with x); workspace: optional fp32
    buffer with at least 3 * B * G * MAX_CHUNKS elements; target_programs: override the grid-size goal (tests use it
    to force one or many chunks).
    """
    if triton is None:
        raise RuntimeError("group_norm: the Triton kernels need triton (pip install triton)")
    if x.dim() < 2:
        raise ValueError(f"group_norm: x must be [B, C, *spatial], got shape {tuple(x.shape)}")
    if x.dtype not in DTYPES:
        raise TypeError(f"group_norm: x dtype {x.dtype} unsupported; expected fp32, fp16 or bf16")
    batch, channels = x.shape[0], x.shape[1]
    if num_groups <= 0 or channels % num_groups:
        raise ValueError(f"group_norm: {channels} channels do not split into {num_groups} groups")
    _check_affine(weight, "weight", x)
    _check_affine(bias, "bias", x)
    if out is None:
        out = torch.empty_like(x)
    elif out.shape != x.shape or out.dtype != x.dtype or out.device != x.device:
        raise ValueError(f"group_norm: out must match x ({tuple(x.shape)}, {x.dtype}, {x.device})")
    elif out.numel() and out.untyped_storage().data_ptr() == x.untyped_storage().data_ptr():
        # the apply programs re-read each group's first element (the pivot) while others overwrite theirs
        raise ValueError("group_norm: out must not share memory with x (no in-place GroupNorm)")
    if x.numel() == 0:
        return out
    hw = x[0, 0].numel()
    _, sxc, sxhw = _strides_3d(x, "x")
    _, syc, syhw = _strides_3d(out, "out")
    for t, (sc, shw) in ((x, (sxc, sxhw)), (out, (syc, syhw))):
        if (channels - 1) * sc + (hw - 1) * shw >= 2**31:
            raise ValueError(f"group_norm: one sample of shape {tuple(t.shape[1:])} is too large for int32 offsets")
    if target_programs is None:
        target_programs = PROGRAMS_PER_SM * (_num_sms(x.device.index or 0) if x.is_cuda else 2)
    p = launch_params(batch, channels, hw, num_groups, channels_last=(sxc == 1 and hw > 1),
                      target_programs=target_programs)
    need = 3 * batch * num_groups * p.num_chunks
    if workspace is None:
        workspace = torch.empty(need, device=x.device, dtype=torch.float32)
    elif workspace.dtype != torch.float32 or workspace.numel() < need or not workspace.is_contiguous():
        raise ValueError(f"group_norm: workspace must be a contiguous fp32 buffer of >= {need} elements")
    stats_args, apply_args = _kernel_args(x, out, weight, bias, workspace, num_groups, eps, silu, p)
    grid = (batch * num_groups, p.num_chunks)
    _group_norm_stats_kernel[grid](**stats_args, num_warps=p.num_warps, num_stages=1)
    _group_norm_apply_kernel[grid](**apply_args, num_warps=p.num_warps, num_stages=1)
    return out


def _kernel_args(x: torch.Tensor, out: torch.Tensor, weight: torch.Tensor | None, bias: torch.Tensor | None,
                 workspace: torch.Tensor, num_groups: int, eps: float, silu: bool,
                 p: LaunchParams) -> tuple[dict, dict]:
    """Keyword arguments of the two kernels (shared by the launcher and `kernel_configs`)."""
    sxb, sxc, sxhw = _strides_3d(x, "x")
    syb, syc, syhw = _strides_3d(out, "out")
    common = dict(HW=x[0, 0].numel(), G=num_groups, CG=x.shape[1] // num_groups, stride_xb=sxb, stride_xc=sxc,
                  stride_xhw=sxhw)
    tiles = dict(TILES_HW=p.tiles_hw, TILES_PER_CHUNK=p.tiles_per_chunk, NUM_CHUNKS=p.num_chunks)
    stats = dict(x_ptr=x, part_ptr=workspace, **common, **tiles, BLOCK_C=p.block_c, BLOCK_HW=p.block_hw)
    apply = dict(x_ptr=x, y_ptr=out, w_ptr=x if weight is None else weight, b_ptr=x if bias is None else bias,
                 part_ptr=workspace, **common, stride_yb=syb, stride_yc=syc, stride_yhw=syhw, **tiles, eps=float(eps),
                 HAS_WEIGHT=weight is not None, HAS_BIAS=bias is not None, SILU=bool(silu),
                 BLOCK_C=p.block_c, BLOCK_HW=p.block_hw, BLOCK_CHUNKS=p.block_chunks)
    return stats, apply


# SD1.5 GroupNorms at 512x512 (performance.md §1.3): (network, batch, channels, side, SiLU variants used). The UNet
# runs at CFG batch 2; GroupNorm without SiLU occurs only as SpatialTransformer.norm (UNet) and AttnBlock.norm (VAE).
SD15_SHAPES = (
    ("unet", 2, 320, 64, (True, False)), ("unet", 2, 640, 64, (True,)), ("unet", 2, 960, 64, (True,)),
    ("unet", 2, 320, 32, (True,)), ("unet", 2, 640, 32, (True, False)), ("unet", 2, 960, 32, (True,)),
    ("unet", 2, 1280, 32, (True,)), ("unet", 2, 1920, 32, (True,)),
    ("unet", 2, 640, 16, (True,)), ("unet", 2, 1280, 16, (True, False)), ("unet", 2, 1920, 16, (True,)),
    ("unet", 2, 2560, 16, (True,)), ("unet", 2, 1280, 8, (True, False)), ("unet", 2, 2560, 8, (True,)),
    ("vae", 1, 512, 64, (True, False)), ("vae", 1, 512, 128, (True,)), ("vae", 1, 512, 256, (True,)),
    ("vae", 1, 256, 256, (True,)), ("vae", 1, 256, 512, (True,)), ("vae", 1, 128, 512, (True,)),
)

# SDXL at 1024x1024 (128x128 latents, CFG batch 2): ResBlock inputs/outputs and transformer norms at the three UNet
# levels (320/640/1280 wide, concatenated skips 960..2560 on the way up), and the VAE decoder up to 1024x1024.
SDXL_SHAPES = (
    ("sdxl unet", 2, 320, 128, (True, False)), ("sdxl unet", 2, 640, 128, (True,)), ("sdxl unet", 2, 960, 128, (True,)),
    ("sdxl unet", 2, 320, 64, (True,)), ("sdxl unet", 2, 640, 64, (True, False)), ("sdxl unet", 2, 960, 64, (True,)),
    ("sdxl unet", 2, 1280, 64, (True,)), ("sdxl unet", 2, 1920, 64, (True,)),
    ("sdxl unet", 2, 640, 32, (True,)), ("sdxl unet", 2, 1280, 32, (True, False)), ("sdxl unet", 2, 1920, 32, (True,)),
    ("sdxl unet", 2, 2560, 32, (True,)),
    ("sdxl vae", 1, 512, 128, (True, False)), ("sdxl vae", 1, 512, 256, (True,)), ("sdxl vae", 1, 512, 512, (True,)),
    ("sdxl vae", 1, 256, 512, (True,)), ("sdxl vae", 1, 256, 1024, (True,)), ("sdxl vae", 1, 128, 1024, (True,)),
)


def kernel_configs(num_sms: int = 132) -> list[dict]:
    """The launches the SD1.5 and SDXL GroupNorms make on an H100 (fp16, NCHW, affine; SiLU where ldm has it).

    One dict per (shape, kernel) for benchmarks/kernel_report.py, which specialises the arguments the way Triton's
    JIT does and compiles each distinct result once. Keys: kernel, fn, args (name -> value; tensors on the meta
    device), num_warps, num_stages, label, and the report's expectations: max_spill_bytes, min_warps_per_sm
    (a memory-bound kernel wants >= 32 resident warps per SM to keep enough loads in flight).
    """
    configs = []
    for net, batch, channels, side, silu_variants in SD15_SHAPES + SDXL_SHAPES:
        x = torch.empty(batch, channels, side, side, dtype=torch.float16, device="meta")
        affine = torch.empty(channels, dtype=torch.float16, device="meta")
        p = launch_params(batch, channels, side * side, 32, channels_last=False,
                          target_programs=PROGRAMS_PER_SM * num_sms)
        ws = torch.empty(3 * batch * 32 * p.num_chunks, dtype=torch.float32, device="meta")
        label = f"{net} {batch}x{channels}x{side}x{side}"
        common = dict(num_warps=p.num_warps, num_stages=1, max_spill_bytes=0, min_warps_per_sm=32)
        for silu in silu_variants:
            stats, apply = _kernel_args(x, x, affine, affine, ws, 32, 1e-6, silu, p)
            if silu:
                configs.append(dict(kernel="group_norm_stats", fn=_group_norm_stats_kernel, args=stats,
                                    label=label, **common))
            configs.append(dict(kernel="group_norm_apply", fn=_group_norm_apply_kernel, args=apply,
                                label=label + (" silu" if silu else ""), **common))
    return configs


def group_norm(x: torch.Tensor, num_groups: int, weight: torch.Tensor | None, bias: torch.Tensor | None,
               eps: float, *, silu: bool = False, backend: str = "auto") -> torch.Tensor:
    """GroupNorm over [B, C, *spatial] with fp32 statistics, optionally followed by SiLU, output in x's dtype.

    backend: "torch" (reference), "triton" (the kernels; CUDA tensors, or CPU tensors under TRITON_INTERPRET=1) or
    "auto" (Triton for CUDA tensors when available).
    """
    if resolve(backend, x) == "torch":
        return group_norm_ref(x, num_groups, weight, bias, eps, silu)
    return group_norm_triton(x, num_groups, weight, bias, eps, silu=silu)
