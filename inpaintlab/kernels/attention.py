"""Attention: plain-torch reference and a fused Triton flash-attention forward kernel.

What is fused: ``softmax(q·kᵀ·scale)·v`` for q [B,H,N,D] and k/v [B,H,M,D] in one kernel. Each program owns a
BLOCK_M tile of queries of one (batch, head), streams K/V through it in BLOCK_N tiles and keeps a running row max
and row sum (online softmax, fp32), so the N×M score matrix never reaches memory. Output is written in q's dtype.

Algorithm: FlashAttention-2 forward (Dao 2023, "FlashAttention-2: Faster Attention with Better Parallelism and Work
Partitioning"; rescaling only once at the end, one program per query tile) in the Triton formulation of the fused
attention tutorial: log2(e) is folded into the softmax scale so the exponentials are ``exp2``.

Naming inside the kernel follows flash-attn: BLOCK_M tiles the query axis (N, ``seqlen_q``), BLOCK_N the key axis
(M, ``seqlen_k``). Specialisation flags are computed from shapes instead of assuming divisibility:
EVEN_M = N % BLOCK_M == 0 (no query-row masks), EVEN_N = M % BLOCK_N == 0 (no key tail: otherwise the key loop
runs over full tiles unmasked and one masked tail tile), EVEN_D = D == BLOCK_D (no head-dim masks).

Constraints:
  * dtypes fp16, bf16, fp32 (q, k, v the same). fp32 dots use IEEE fp32 (not TF32), matching torch's default;
    that path is for exactness, so backend="auto" sends fp32 to SDPA.
  * head dim 1 <= D <= 256; BLOCK_D = next_power_of_2(D) (at least 16, the smallest tl.dot K), padded lanes are
    masked — SD1.5's 40/80/160 run as 64/128/256, so 37.5 % of the MMA work is padding.
    D is a compile-time constant (one compiled kernel per head dim), so the head-dim masks vectorise.
  * any N >= 0 and M >= 1 (77 keys for cross-attention, odd N).
  * arbitrary strides (including 0, for broadcast k/v): strides are passed to the kernel, nothing is copied. A
    unit stride on D gives vectorised loads (the launcher also passes the strides' common power-of-two divisor,
    ALIGN, so the 80-byte rows of D = 40 are known to be 16-byte aligned); other layouts are correct but slower.
    The output gets q's memory layout when q is dense (``torch.empty_like``), so a [B,N,H,D].transpose(1,2) view
    comes back as one and the caller's reshape to [B,N,H·D] is free.
  * batch/head offsets are 64-bit; offsets inside one (batch, head) slice are 32-bit (< 2**31 elements).

Block sizes (``block_config``), chosen so nothing spills when compiled for sm_90 (Triton 3.9 offline compile of
contiguous inputs, registers per thread from ``cuobjdump -res-usage``; fp16/bf16 rows use wgmma and async copies,
with and without the N/M tails):

    dtype       BLOCK_D   BLOCK_M  BLOCK_N  num_warps  num_stages  regs   SD1.5 head dims
    fp16/bf16   <= 64       128      64        4          3         218    40 (and 64)
    fp16/bf16   128         128      64        8          3         162    80
    fp16/bf16   256          64      64        8          2         197    160
    fp32        any          32      16        4          2        <= 238  (D <= 64; larger D with a key tail
                                                                           spills: IEEE fp32 FMA dots are a
                                                                           reference-grade path, not a fast one)

FLOP estimate (defines the benchmark's TFLOP/s): 4·B·H·N·M·D — 2·N·M·D for q·kᵀ plus 2·N·M·D for p·v, useful
(unpadded) work only; the exp/max/sum work is not counted.

GPUs tested on: none yet — verified under the Triton interpreter (TRITON_INTERPRET=1, CPU tensors); compiled for
sm_90 by benchmarks/kernel_report.py.

Caveats: Triton 3.9's interpreter multiplies the raw bits of bf16 ``tl.dot`` operands (triton-lang/triton#11584);
when interpreting, bf16 operands are upcast to fp32 before each dot (the probabilities are still rounded to bf16
first, as on the GPU). Compiled kernels are unchanged. Inference only: no backward kernel.
"""
from __future__ import annotations

import logging
import math

import torch
import torch.nn.functional as F

from .dispatch import log_once, check_backend, interpreting, resolve

try:
    import triton
    import triton.language as tl
except ImportError:  # triton is optional; attention_ref needs only torch
    triton = tl = None


log = logging.getLogger(__name__)

MAX_HEAD_DIM = 256
SUPPORTED_DTYPES = (torch.float16, torch.bfloat16, torch.float32)
LOG2E = 1.4426950408889634

# padded head dim -> (BLOCK_M, BLOCK_N, num_warps, num_stages) for fp16/bf16; see the module docstring's table.
_CONFIGS = {
    16: (128, 64, 4, 3),
    32: (128, 64, 4, 3),
    64: (128, 64, 4, 3),
    128: (128, 64, 8, 3),
    256: (64, 64, 8, 2),
}
# fp32 dots run on FMA units with the operands in registers: larger tiles spill at every head dim.
_CONFIG_FP32 = (32, 16, 4, 2)


def attention_ref(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, scale: float | None = None) -> torch.Tensor:
    """Plain softmax attention, q [B,H,N,D], k/v [B,H,M,D] -> [B,H,N,D], computed in q's dtype by SDPA."""
    return F.scaled_dot_product_attention(q, k, v, scale=scale)


def attention_math(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, scale: float | None = None) -> torch.Tensor:
    """Test oracle: explicit softmax(q·kᵀ·scale)·v in float64 (returns float64)."""
    scale = q.shape[-1] ** -0.5 if scale is None else scale
    s = torch.matmul(q.double(), k.double().transpose(-1, -2)) * scale  # [B,H,N,M]
    return torch.matmul(torch.softmax(s, dim=-1), v.double())


# --------------------------------------------------------------------------------------------------------------------
# Triton kernel. triton.jit decides compiled vs interpreted when it decorates, i.e. when this module is imported
# (with inpaintlab.kernels): TRITON_INTERPRET=1 must be set before that to run the kernel on CPU tensors.


def _jit(fn):
    return fn if triton is None else triton.jit(fn)  # without triton only the torch path exists


@_jit
def _attention_tile_step(acc, l_i, m_i, q, k_ptrs, v_ptrs, offs_n, offs_d, start_n, seqlen_k, qk_scale,
                         stride_kn, stride_vn,
                         MASK_N: tl.constexpr, HEAD_DIM: tl.constexpr, EVEN_D: tl.constexpr,
                         UPCAST_DOT: tl.constexpr, DOT_PRECISION: tl.constexpr):
    """One K/V tile of the online softmax: returns the updated (acc, l_i, m_i)."""
    n_ok = (start_n + offs_n) < seqlen_k
    # k is loaded transposed, [BLOCK_D, BLOCK_N], so q·kᵀ is a plain dot.
    if MASK_N and EVEN_D:
        k = tl.load(k_ptrs + start_n * stride_kn, mask=n_ok[None, :], other=0.0)
    elif MASK_N:
        k = tl.load(k_ptrs + start_n * stride_kn, mask=n_ok[None, :] & (offs_d[:, None] < HEAD_DIM), other=0.0)
    elif EVEN_D:
        k = tl.load(k_ptrs + start_n * stride_kn)
    else:
        k = tl.load(k_ptrs + start_n * stride_kn, mask=offs_d[:, None] < HEAD_DIM, other=0.0)
    if UPCAST_DOT:
        k = k.to(tl.float32)
    s = tl.dot(q, k, input_precision=DOT_PRECISION) * qk_scale  # [BLOCK_M, BLOCK_N], log2 units
    if MASK_N:
        # keys past M get -inf so exp2 gives exactly 0; every tile holds at least one real key, so the row max
        # stays finite and no row sees -inf - -inf.
        s = tl.where(n_ok[None, :], s, float("-inf"))
    m_new = tl.maximum(m_i, tl.max(s, 1))
    p = tl.math.exp2(s - m_new[:, None])
    alpha = tl.math.exp2(m_i - m_new)  # 0 on the first tile (m_i = -inf)
    l_i = l_i * alpha + tl.sum(p, 1)
    acc = acc * alpha[:, None]
    if MASK_N and EVEN_D:
        v = tl.load(v_ptrs + start_n * stride_vn, mask=n_ok[:, None], other=0.0)
    elif MASK_N:
        v = tl.load(v_ptrs + start_n * stride_vn, mask=n_ok[:, None] & (offs_d[None, :] < HEAD_DIM), other=0.0)
    elif EVEN_D:
        v = tl.load(v_ptrs + start_n * stride_vn)
    else:
        v = tl.load(v_ptrs + start_n * stride_vn, mask=offs_d[None, :] < HEAD_DIM, other=0.0)
    # p is rounded to the input dtype before the second dot, as in FlashAttention.
    p = p.to(v.dtype)
    if UPCAST_DOT:
        p = p.to(tl.float32)
        v = v.to(tl.float32)
    acc = tl.dot(p, v, acc, input_precision=DOT_PRECISION)
    return acc, l_i, m_new


@_jit
def _attention_fwd_kernel(
    q_ptr,  # [B, H, N, D] any strides
    k_ptr,  # [B, H, M, D] any strides
    v_ptr,  # [B, H, M, D] any strides
    o_ptr,  # [B, H, N, D] output, q's dtype
    stride_qb, stride_qh, stride_qn, stride_qd,
    stride_kb, stride_kh, stride_kn, stride_kd,
    stride_vb, stride_vh, stride_vn, stride_vd,
    stride_ob, stride_oh, stride_on, stride_od,
    num_heads,  # H
    seqlen_q,  # N
    seqlen_k,  # M
    qk_scale,  # scale · log2(e), fp32
    HEAD_DIM: tl.constexpr,  # D; a constant so the head-dim masks have known constancy and loads vectorise
    BLOCK_M: tl.constexpr,  # query rows per program
    BLOCK_N: tl.constexpr,  # keys per loop iteration
    BLOCK_D: tl.constexpr,  # next_power_of_2(D), >= 16
    EVEN_M: tl.constexpr,  # N % BLOCK_M == 0
    EVEN_N: tl.constexpr,  # M % BLOCK_N == 0
    EVEN_D: tl.constexpr,  # D == BLOCK_D
    ALIGN: tl.constexpr,  # every stride except unit head-dim strides is a multiple of ALIGN elements
    UPCAST_DOT: tl.constexpr,  # interpreter only: bf16 dot operands -> fp32 (triton#11584)
    DOT_PRECISION: tl.constexpr,  # "ieee" for fp32 inputs (no TF32); ignored for fp16/bf16
):
    # Triton only learns "divisible by 16" about an int argument, but rows of a D = 40 fp16 tensor (80 bytes) are
    # 16-byte aligned too. Rewriting each stride as (s // ALIGN) * ALIGN (exact: the launcher checked divisibility)
    # tells the compiler, so loads vectorise and are pipelined as async copies; without it D = 40 spills registers.
    # (tl.multiple_of cannot annotate a function argument.)
    stride_qb, stride_qh, stride_qn = stride_qb // ALIGN * ALIGN, stride_qh // ALIGN * ALIGN, stride_qn // ALIGN * ALIGN
    stride_kb, stride_kh, stride_kn = stride_kb // ALIGN * ALIGN, stride_kh // ALIGN * ALIGN, stride_kn // ALIGN * ALIGN
    stride_vb, stride_vh, stride_vn = stride_vb // ALIGN * ALIGN, stride_vh // ALIGN * ALIGN, stride_vn // ALIGN * ALIGN
    stride_ob, stride_oh, stride_on = stride_ob // ALIGN * ALIGN, stride_oh // ALIGN * ALIGN, stride_on // ALIGN * ALIGN

    start_m = tl.program_id(0)  # query tile; consecutive programs share one (b, h), so its K/V stay in L2
    off_bh = tl.program_id(1)
    off_b = (off_bh // num_heads).to(tl.int64)
    off_h = (off_bh % num_heads).to(tl.int64)
    offs_m = start_m * BLOCK_M + tl.arange(0, BLOCK_M)
    offs_n = tl.arange(0, BLOCK_N)
    offs_d = tl.arange(0, BLOCK_D)

    q_base = q_ptr + off_b * stride_qb + off_h * stride_qh
    k_base = k_ptr + off_b * stride_kb + off_h * stride_kh
    v_base = v_ptr + off_b * stride_vb + off_h * stride_vh
    o_base = o_ptr + off_b * stride_ob + off_h * stride_oh
    q_ptrs = q_base + offs_m[:, None] * stride_qn + offs_d[None, :] * stride_qd  # [BLOCK_M, BLOCK_D]
    k_ptrs = k_base + offs_n[None, :] * stride_kn + offs_d[:, None] * stride_kd  # [BLOCK_D, BLOCK_N] (kᵀ)
    v_ptrs = v_base + offs_n[:, None] * stride_vn + offs_d[None, :] * stride_vd  # [BLOCK_N, BLOCK_D]

    # Rows past N load zeros: their scores stay finite and their results are not stored.
    if EVEN_M and EVEN_D:
        q = tl.load(q_ptrs)
    elif EVEN_M:
        q = tl.load(q_ptrs, mask=offs_d[None, :] < HEAD_DIM, other=0.0)
    elif EVEN_D:
        q = tl.load(q_ptrs, mask=offs_m[:, None] < seqlen_q, other=0.0)
    else:
        q = tl.load(q_ptrs, mask=(offs_m[:, None] < seqlen_q) & (offs_d[None, :] < HEAD_DIM), other=0.0)
    if UPCAST_DOT:
        q = q.to(tl.float32)

    m_i = tl.full([BLOCK_M], float("-inf"), dtype=tl.float32)  # running row max (log2 units)
    l_i = tl.zeros([BLOCK_M], dtype=tl.float32)  # running row sum of exp2
    acc = tl.zeros([BLOCK_M, BLOCK_D], dtype=tl.float32)

    # Full key tiles without key masks, then (if M is not a multiple of BLOCK_N) one masked tail tile.
    n_full = (seqlen_k // BLOCK_N) * BLOCK_N
    for start_n in range(0, n_full, BLOCK_N):
        acc, l_i, m_i = _attention_tile_step(acc, l_i, m_i, q, k_ptrs, v_ptrs, offs_n, offs_d, start_n, seqlen_k,
                                             qk_scale, stride_kn, stride_vn,
                                             False, HEAD_DIM, EVEN_D, UPCAST_DOT, DOT_PRECISION)
    if not EVEN_N:
        acc, l_i, m_i = _attention_tile_step(acc, l_i, m_i, q, k_ptrs, v_ptrs, offs_n, offs_d, n_full, seqlen_k,
                                             qk_scale, stride_kn, stride_vn,
                                             True, HEAD_DIM, EVEN_D, UPCAST_DOT, DOT_PRECISION)

    out = (acc / l_i[:, None]).to(o_ptr.dtype.element_ty)
    o_ptrs = o_base + offs_m[:, None] * stride_on + offs_d[None, :] * stride_od
    if EVEN_M and EVEN_D:
        tl.store(o_ptrs, out)
    elif EVEN_M:
        tl.store(o_ptrs, out, mask=offs_d[None, :] < HEAD_DIM)
    elif EVEN_D:
        tl.store(o_ptrs, out, mask=offs_m[:, None] < seqlen_q)
    else:
        tl.store(o_ptrs, out, mask=(offs_m[:, None] < seqlen_q) & (offs_d[None, :] < HEAD_DIM))


# --------------------------------------------------------------------------------------------------------------------
# Launchers


def block_config(head_dim: int, dtype: torch.dtype = torch.float16) -> tuple[int, int, int, int, int]:
    """(BLOCK_M, BLOCK_N, BLOCK_D, num_warps, num_stages) for a head dim and dtype (table in the module docstring)."""
    block_d = max(16, 1 << max(0, head_dim - 1).bit_length())
    block_m, block_n, num_warps, num_stages = _CONFIG_FP32 if dtype == torch.float32 else _CONFIGS[block_d]
    return block_m, block_n, block_d, num_warps, num_stages


def _check_inputs(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> None:
    """Shape/dtype/device checks shared by every backend."""
    for name, t in (("q", q), ("k", k), ("v", v)):
        if not isinstance(t, torch.Tensor):
            raise TypeError(f"attention: {name} must be a torch.Tensor, got {type(t).__name__}")
        if t.dim() != 4:
            raise ValueError(f"attention: {name} must be 4-D [B,H,seq,D], got shape {tuple(t.shape)}")
    if not (q.device == k.device == v.device):
        raise ValueError(f"attention: q, k, v must be on one device, got {q.device}, {k.device}, {v.device}")
    if not (q.dtype == k.dtype == v.dtype):
        raise TypeError(f"attention: q, k, v must share a dtype, got {q.dtype}, {k.dtype}, {v.dtype}")
    if k.shape != v.shape:
        raise ValueError(f"attention: k and v must have the same shape [B,H,M,D], got {tuple(k.shape)} and "
                         f"{tuple(v.shape)}")
    for i, what in ((0, "batch size B"), (1, "head count H"), (3, "head dim D")):
        if q.shape[i] != k.shape[i]:
            raise ValueError(f"attention: q and k/v differ in {what}: q {tuple(q.shape)}, k {tuple(k.shape)}")
    if k.shape[2] == 0 and q.shape[2] > 0:
        raise ValueError("attention: k/v have no keys (M = 0); softmax over an empty set is undefined")


def _triton_unsupported(q: torch.Tensor) -> str | None:
    """Why the Triton kernel cannot take these inputs, or None."""
    if q.dtype not in SUPPORTED_DTYPES:
        return f"dtype {q.dtype} is not supported (fp16, bf16, fp32)"
    if q.shape[3] > MAX_HEAD_DIM:
        return f"head dim D = {q.shape[3]} exceeds the kernel's maximum of {MAX_HEAD_DIM}"
    return None


def attention_triton(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, scale: float | None = None, *,
                     out: torch.Tensor | None = None, block_m: int | None = None, block_n: int | None = None,
                     num_warps: int | None = None, num_stages: int | None = None) -> torch.Tensor:
    """Run the Triton kernel (no backend choice). q [B,H,N,D], k/v [B,H,M,D] -> [B,H,N,D] in q's dtype.

    out: optional preallocated [B,H,N,D] output in q's dtype (any strides); it is written, not read.
    block_m/block_n/num_warps/num_stages override the per-head-dim table (powers of two; block sizes >= 16).
    """
    _check_inputs(q, k, v)
    why = _triton_unsupported(q)
    if why is not None:
        raise ValueError(f"attention (triton): {why}")
    if triton is None:
        raise RuntimeError("attention (triton): triton is not installed (pip install triton)")
    if not (q.is_cuda or interpreting()):
        raise RuntimeError(f"attention (triton): needs CUDA tensors or TRITON_INTERPRET=1, got {q.device.type}")
    if out is None:
        out = torch.empty_like(q)  # keeps q's layout when q is dense
    elif out.shape != q.shape or out.dtype != q.dtype or out.device != q.device:
        raise ValueError(f"attention (triton): out must be {tuple(q.shape)} {q.dtype} on {q.device}, got "
                         f"{tuple(out.shape)} {out.dtype} on {out.device}")
    if out.numel() == 0:
        return out

    grid, args, launch = _launch_params(q, k, v, out, scale, block_m, block_n, num_warps, num_stages)
    _attention_fwd_kernel[grid](**args, **launch)
    return out


def _launch_params(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, out: torch.Tensor, scale: float | None,
                   block_m: int | None = None, block_n: int | None = None, num_warps: int | None = None,
                   num_stages: int | None = None) -> tuple[tuple[int, int], dict, dict]:
    """(grid, kernel arguments by name, num_warps/num_stages) for validated inputs; shared with kernel_configs()."""
    B, H, N, D = q.shape
    M = k.shape[2]
    cfg_m, cfg_n, block_d, cfg_warps, cfg_stages = block_config(D, q.dtype)
    block_m = block_m or cfg_m
    block_n = block_n or cfg_n
    for name, value in (("block_m", block_m), ("block_n", block_n)):
        if value < 16 or value & (value - 1):
            raise ValueError(f"attention (triton): {name} must be a power of two >= 16, got {value}")
    scale = D ** -0.5 if scale is None else float(scale)
    if not math.isfinite(scale):
        raise ValueError(f"attention: scale must be finite, got {scale}")
    if B * H > 65535:
        raise ValueError(f"attention (triton): B·H = {B * H} exceeds the grid limit 65535")
    args = dict(q_ptr=q, k_ptr=k, v_ptr=v, o_ptr=out)
    for t, name in ((q, "q"), (k, "k"), (v, "v"), (out, "o")):
        args.update(zip((f"stride_{name}b", f"stride_{name}h", f"stride_{name}n", f"stride_{name}d"), t.stride()))
    args.update(
        num_heads=H, seqlen_q=N, seqlen_k=M, qk_scale=scale * LOG2E,
        HEAD_DIM=D, BLOCK_M=block_m, BLOCK_N=block_n, BLOCK_D=block_d,
        EVEN_M=N % block_m == 0, EVEN_N=M % block_n == 0, EVEN_D=D == block_d,
        ALIGN=_stride_alignment(q, k, v, out),
        UPCAST_DOT=interpreting() and q.dtype == torch.bfloat16,
        DOT_PRECISION="ieee" if q.dtype == torch.float32 else "tf32",
    )
    grid = (triton_cdiv(N, block_m), B * H)
    return grid, args, dict(num_warps=num_warps or cfg_warps, num_stages=num_stages or cfg_stages)


def triton_cdiv(a: int, b: int) -> int:
    return -(-a // b)


def _stride_alignment(*tensors: torch.Tensor) -> int:
    """Largest power of two (at most 16 bytes' worth of elements) dividing every stride but the unit head-dim ones."""
    align = 16 // tensors[0].element_size()
    for t in tensors:
        for i, st in enumerate(t.stride()):
            if i == 3 and st == 1:
                continue
            while align > 1 and st % align:
                align //= 2
    return align


def sd15_attention_shapes() -> list[tuple[str, int, int, int, int, int]]:
    """(label, B, H, N, M, D) of the SD1.5 UNet's attention calls at 512² and 768² with CFG.

    Self-attention at the three attention levels (head dims 40/80/160) and the 8×8-latent mid block, and
    cross-attention over the 77 text tokens at each of them; B = 2 (cond + uncond), 8 heads.
    """
    shapes = []
    for res, tokens in ((512, 4096), (768, 9216)):
        for level, (n, d) in enumerate(((tokens, 40), (tokens // 4, 80), (tokens // 16, 160), (tokens // 64, 160))):
            where = "mid" if level == 3 else f"level{level}"
            shapes.append((f"{res}px {where} self", 2, 8, n, n, d))
            shapes.append((f"{res}px {where} cross", 2, 8, n, 77, d))
    return shapes


def sd2_sdxl_attention_shapes() -> list[tuple[str, int, int, int, int, int]]:
    """(label, B, H, N, M, D) of the SD 2.x UNet at 768² and the SDXL UNet at 1024², with CFG (B = 2).

    Both use 64-wide heads (heads = width / 64). SD 2.x: attention at 96², 48², 24² latent positions and the 12² mid
    block (5/10/20/20 heads), cross-attention over 77 OpenCLIP tokens. SDXL: attention only at 64² (10 heads) and 32²
    (20 heads, also the mid block), cross-attention over 77 tokens of the 2048-wide context.
    """
    shapes = []
    for where, n, heads in (("level0", 9216, 5), ("level1", 2304, 10), ("level2", 576, 20), ("mid", 144, 20)):
        shapes += [(f"sd2 768px {where} self", 2, heads, n, n, 64), (f"sd2 768px {where} cross", 2, heads, n, 77, 64)]
    for where, n, heads in (("level1", 4096, 10), ("level2", 1024, 20)):
        shapes += [(f"sdxl 1024px {where} self", 2, heads, n, n, 64),
                   (f"sdxl 1024px {where} cross", 2, heads, n, 77, 64)]
    return shapes


def kernel_configs() -> list[dict]:
    """The launches the SD1.5, SD 2.x and SDXL UNets make (fp16, q/k/v as [B,N,H,D].transpose(1,2) views, as
    CrossAttention passes them), for benchmarks/kernel_report.py: it compiles each distinct specialisation for sm_90
    and checks the expectations — no spills, tensor-core MMA, and at least 8 resident warps per SM (two 4-warp or one
    8-warp CTA).
    """
    configs = []
    for label, B, H, N, M, D in sd15_attention_shapes() + sd2_sdxl_attention_shapes():
        q = torch.empty(B, N, H, D, dtype=torch.float16, device="meta").transpose(1, 2)
        k = torch.empty(B, M, H, D, dtype=torch.float16, device="meta").transpose(1, 2)
        v = torch.empty(B, M, H, D, dtype=torch.float16, device="meta").transpose(1, 2)
        _, args, launch = _launch_params(q, k, v, torch.empty_like(q), None)
        configs.append(dict(kernel="attention_fwd", fn=_attention_fwd_kernel, args=args, label=label, **launch,
                            max_spill_bytes=0, expect_mma=True, min_warps_per_sm=8))
    return configs


def _auto_prefers_torch(q: torch.Tensor) -> str | None:
    """Why backend="auto" should run SDPA for these inputs even where the kernel could run, or None."""
    why = _triton_unsupported(q)
    if why is None and q.dtype == torch.float32:
        why = "fp32 inputs: the kernel's IEEE-fp32 FMA path is reference-grade, SDPA is faster"
    return why


def attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, *, scale: float | None = None,
              backend: str = "auto") -> torch.Tensor:
    """softmax(q·kᵀ·scale)·v for q [B,H,N,D], k/v [B,H,M,D] -> [B,H,N,D] in q's dtype; scale defaults to D**-0.5.

    backend "torch" runs SDPA; "triton" the fused kernel (an error if it cannot); "auto" the kernel for fp16/bf16
    CUDA tensors with D <= 256 and SDPA otherwise (fp32, the VAE's single 512-wide head, CPU), logged at debug level.
    """
    check_backend(backend)
    _check_inputs(q, k, v)
    if backend == "auto" and q.is_cuda:
        why = _auto_prefers_torch(q)
        if why is not None:
            log_once("attention: auto -> torch because %s", why)
            return attention_ref(q, k, v, scale)
    if resolve(backend, q) == "torch":
        return attention_ref(q, k, v, scale)
    return attention_triton(q, k, v, scale)
