"""Flash-attention forward kernel vs an explicit float64 softmax(q·kᵀ)·v.

Tolerance (flash-attn's rule): |kernel - ref64| <= 2·|torch same dtype - ref64| + atol(dtype), elementwise maximum,
with atol 1e-4 fp32, 1e-2 fp16, 5e-2 bf16; "torch same dtype" is SDPA on CPU in the input dtype. On CPU the kernel
runs under Triton's interpreter (tests/conftest.py sets TRITON_INTERPRET=1), so shapes stay small; the SD1.5
shapes run under the `cuda` marker.
"""
import os
import subprocess
import sys

import pytest
import torch
import torch.nn.functional as F

from inpaintlab.kernels import attention as attention_public
from inpaintlab.kernels import dispatch
from inpaintlab.kernels.attention import attention, attention_math, attention_ref, attention_triton, block_config

DEVICE = "cuda" if torch.cuda.is_available() else "cpu"
ATOL = {torch.float32: 1e-4, torch.float16: 1e-2, torch.bfloat16: 5e-2}
DTYPES = [torch.float32, torch.float16, torch.bfloat16]
TORCH_BACKEND_ATOL = {torch.float32: 2e-6, torch.float16: 1e-3, torch.bfloat16: 8e-3}


def _qkv(B, H, N, M, D, dtype, seed=0, scale_q=1.0):
    g = torch.Generator().manual_seed(seed)
    q = torch.randn(B, H, N, D, generator=g) * scale_q
    k = torch.randn(B, H, M, D, generator=g)
    v = torch.randn(B, H, M, D, generator=g)
    return (t.to(DEVICE, dtype) for t in (q, k, v))


def _poisoned_out(q):
    """NaN-filled output buffer with q's layout: any element the kernel fails to write stays NaN."""
    return torch.full_like(q, float("nan"))


def _check(out, q, k, v, scale=None):
    """flash-attn's rule against the float64 reference; returns (max error, allowed slack) for messages."""
    ref = attention_math(q, k, v, scale)
    same_dtype = F.scaled_dot_product_attention(q, k, v, scale=scale)
    assert out.dtype == q.dtype and out.shape == q.shape
    assert torch.isfinite(out).all(), "kernel left unwritten (NaN) or non-finite elements"
    err = (out.double() - ref).abs()
    bound = 2 * (same_dtype.double() - ref).abs() + ATOL[q.dtype]
    worst = (err - bound).max().item()
    assert worst <= 0, (f"{q.dtype} {tuple(q.shape)} x {tuple(k.shape)}: max err {err.max().item():.3g}, "
                        f"exceeds the bound by {worst:.3g}")
    return err.max().item()


# head dims of SD1.5 (40/80/160) plus a power of two; odd query counts; 77 cross-attention keys and M = N.
@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("D", [40, 64, 80, 160])
@pytest.mark.parametrize("B,N,M", [(1, 37, 77), (2, 70, 70)])
def test_matches_float64_reference(B, N, M, D, dtype):
    q, k, v = _qkv(B, 2, N, M, D, dtype, seed=D + N)
    out = attention_triton(q, k, v, out=_poisoned_out(q))
    _check(out, q, k, v)


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("N,M,D", [(32, 48, 64), (37, 77, 64), (32, 48, 40), (37, 77, 40), (1, 1, 8), (5, 130, 256)])
def test_tile_flags_and_multiple_tiles(N, M, D, dtype):
    """Small tiles force several query programs and key iterations through every EVEN_M/EVEN_N/EVEN_D combination."""
    q, k, v = _qkv(2, 2, N, M, D, dtype, seed=N * M + D)
    out = attention_triton(q, k, v, out=_poisoned_out(q), block_m=16, block_n=16)
    _check(out, q, k, v)


def test_default_block_config_table():
    assert block_config(40) == (128, 64, 64, 4, 3)
    assert block_config(80) == (128, 64, 128, 8, 3)
    assert block_config(160) == (64, 64, 256, 8, 2)
    assert block_config(8)[2] == 16 and block_config(256)[2] == 256
    assert block_config(80, torch.float32)[:2] == (32, 16)


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
def test_strided_views_and_layout(dtype):
    """[B,N,H,D] tensors viewed as [B,H,N,D] (what the UNet's head split produces) run without copies."""
    B, N, M, H, D = 2, 37, 77, 2, 40
    g = torch.Generator().manual_seed(1)
    q = torch.randn(B, N, H, D, generator=g).to(DEVICE, dtype).transpose(1, 2)
    kv = torch.randn(B, M, 2, H, D, generator=g).to(DEVICE, dtype)  # fused k/v projection output
    k, v = kv[:, :, 0].transpose(1, 2), kv[:, :, 1].transpose(1, 2)
    assert not (q.is_contiguous() or k.is_contiguous() or v.is_contiguous())
    before = [t.clone() for t in (q, k, v)]
    out = attention(q, k, v, backend="triton")
    _check(out, q, k, v)
    assert out.stride() == q.stride(), "output should keep q's [B,N,H,D] layout"
    for t, b in zip((q, k, v), before):
        assert torch.equal(t, b), "inputs must not be modified"


def test_broadcast_keys():
    """Stride-0 (expanded) k/v, e.g. one context shared by the batch, need no copy."""
    q, k, v = _qkv(2, 2, 37, 77, 40, torch.float16, seed=2)
    k, v = k[:1].expand(2, -1, -1, -1), v[:1].expand(2, -1, -1, -1)
    assert k.stride(0) == 0
    _check(attention_triton(q, k, v, out=_poisoned_out(q)), q, k, v)


def test_bf16_upcast_only_when_interpreting(monkeypatch):
    """The triton#11584 workaround is a constexpr of the interpreter run only; compiled kernels keep bf16 dots."""
    import importlib

    att = importlib.import_module("inpaintlab.kernels.attention")
    q = torch.empty(2, 8, 64, 40, dtype=torch.bfloat16, device="meta")
    for interp, expected in ((True, True), (False, False)):
        monkeypatch.setattr(att, "interpreting", lambda interp=interp: interp)
        assert att._launch_params(q, q, q, torch.empty_like(q), None)[1]["UPCAST_DOT"] is expected
    assert att._launch_params(q.half(), q.half(), q.half(), q.half(), None)[1]["UPCAST_DOT"] is False


def test_head_dim_not_last_contiguous():
    """A unit stride elsewhere than on D is still correct (slow path)."""
    q, k, v = (t.transpose(2, 3).contiguous().transpose(2, 3) for t in _qkv(1, 2, 37, 77, 40, torch.float16))
    assert q.stride(3) != 1
    _check(attention_triton(q, k, v), q, k, v)


def test_store_masks_leave_neighbours_untouched():
    """Output written into a view of a wider NaN buffer: the padded head-dim lanes and rows past N stay NaN."""
    q, k, v = _qkv(1, 2, 37, 77, 40, torch.float16, seed=3)
    buf = torch.full((1, 2, 45, 56), float("nan"), dtype=q.dtype, device=DEVICE)
    out = attention_triton(q, k, v, out=buf[:, :, :37, :40])
    _check(out, q, k, v)
    assert torch.isnan(buf[:, :, :, 40:]).all() and torch.isnan(buf[:, :, 37:, :]).all()


@pytest.mark.parametrize("scale", [0.3, -0.2, 0.0])
@pytest.mark.parametrize("dtype", DTYPES, ids=str)
def test_explicit_scale(scale, dtype):
    q, k, v = _qkv(1, 2, 21, 77, 80, dtype, seed=5)
    _check(attention_triton(q, k, v, scale, out=_poisoned_out(q), block_n=32), q, k, v, scale)


def test_large_scores_are_stable():
    """Scores of several hundred: exp without the running max would overflow fp32."""
    q, k, v = _qkv(1, 2, 37, 77, 64, torch.float32, seed=7, scale_q=60.0)
    _check(attention_triton(q, k, v, block_n=16), q, k, v)


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
def test_torch_and_triton_backends_agree(dtype):
    q, k, v = _qkv(2, 2, 37, 77, 40, dtype, seed=11)
    a = attention_public(q, k, v, backend="torch")
    b = attention_public(q, k, v, backend="triton")
    ref = attention_math(q, k, v)
    # the torch backend against the float64 reference; measured max abs error (CPU) 4.3e-7 fp32, 3.4e-4 fp16,
    # 2.3e-3 bf16 (about half an ulp of outputs below 1 for the half types); tolerance about 2 ulp / 5x
    assert a.dtype == dtype and a.shape == q.shape
    torch_err = (a.double() - ref).abs().max().item()
    assert torch_err <= TORCH_BACKEND_ATOL[dtype], (dtype, torch_err)
    # both are within their dtype's tolerance of the float64 reference, hence of each other
    assert (a.double() - b.double()).abs().max().item() <= 2 * ATOL[dtype] + 2 * torch_err


def test_auto_backend_on_cpu_is_torch():
    q, k, v = (t.cpu() for t in _qkv(1, 2, 9, 77, 40, torch.float32))
    assert torch.equal(attention(q, k, v), attention_ref(q, k, v))


def test_auto_choice_on_cuda_tensors():
    """What backend="auto" does with CUDA tensors (decided from dtype and head dim; checked here without a GPU)."""
    from inpaintlab.kernels.attention import _auto_prefers_torch

    def q(dtype, D):
        return torch.empty(1, 1, 4, D, dtype=dtype, device="meta")

    assert _auto_prefers_torch(q(torch.float16, 40)) is None
    assert _auto_prefers_torch(q(torch.bfloat16, 256)) is None
    assert "fp32" in _auto_prefers_torch(q(torch.float32, 40))
    assert "head dim" in _auto_prefers_torch(q(torch.float16, 512))
    assert "dtype" in _auto_prefers_torch(q(torch.float64, 40))


def test_empty_queries():
    q, k, v = _qkv(1, 2, 0, 77, 40, torch.float16)
    assert attention_triton(q, k, v).shape == (1, 2, 0, 40)


@pytest.mark.parametrize("backend", ["torch", "triton"])
def test_shape_errors(backend):
    q, k, v = _qkv(2, 2, 8, 9, 40, torch.float32)
    with pytest.raises(ValueError, match="batch size"):
        attention(q, k[:1], v[:1], backend=backend)
    with pytest.raises(ValueError, match="head count"):
        attention(q, k[:, :1], v[:, :1], backend=backend)
    with pytest.raises(ValueError, match="head dim"):
        attention(q, k[..., :32], v[..., :32], backend=backend)
    with pytest.raises(ValueError, match="same shape"):
        attention(q, k, v[:, :, :4], backend=backend)
    with pytest.raises(ValueError, match="4-D"):
        attention(q[0], k[0], v[0], backend=backend)
    with pytest.raises(ValueError, match="no keys"):
        attention(q, k[:, :, :0], v[:, :, :0], backend=backend)
    with pytest.raises(TypeError, match="share a dtype"):
        attention(q, k.half(), v.half(), backend=backend)
    with pytest.raises(ValueError, match="one device"):
        attention(q, k.to("meta"), v, backend=backend)
    with pytest.raises(ValueError, match="unknown kernel backend"):
        attention(q, k, v, backend="cuda")


def test_triton_only_limits():
    q, k, v = _qkv(1, 1, 4, 4, 320, torch.float32)
    with pytest.raises(ValueError, match="exceeds the kernel's maximum of 256"):
        attention(q, k, v, backend="triton")
    # the torch path has no head-dim limit (the VAE's single 512-wide head uses it)
    assert attention(q, k, v, backend="torch").shape == q.shape
    q, k, v = _qkv(1, 1, 4, 4, 32, torch.float64)
    with pytest.raises(ValueError, match="not supported"):
        attention(q, k, v, backend="triton")
    q, k, v = _qkv(1, 1, 4, 4, 32, torch.float16)
    with pytest.raises(ValueError, match="power of two"):
        attention_triton(q, k, v, block_m=24)
    with pytest.raises(ValueError, match="out must be"):
        attention_triton(q, k, v, out=torch.empty(1, 1, 4, 32, device=DEVICE))


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the CPU-without-interpreter error")
def test_triton_on_cpu_without_interpreter_errors(monkeypatch):
    monkeypatch.setattr(dispatch, "interpreting", lambda: False)
    q, k, v = _qkv(1, 1, 4, 4, 32, torch.float32)
    with pytest.raises(RuntimeError, match="TRITON_INTERPRET=1"):
        attention(q, k, v, backend="triton")
    with pytest.raises(RuntimeError, match="TRITON_INTERPRET=1"):
        attention_public(q, k, v, backend="triton")


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the CPU-without-interpreter error")
def test_triton_on_cpu_without_interpreter_errors_in_fresh_process():
    """Same check with triton imported for real without TRITON_INTERPRET (no monkeypatching)."""
    code = ("import torch\nfrom inpaintlab.kernels import attention\nq = torch.randn(1, 1, 4, 32)\n"
            "try:\n    attention(q, q, q, backend='triton')\nexcept RuntimeError as e:\n    print('ERR', e)\n")
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    res = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120,
                         check=False)
    assert res.returncode == 0, res.stderr
    assert "ERR" in res.stdout and "CUDA tensors" in res.stdout


@pytest.mark.cuda
@pytest.mark.parametrize("N,M,D", [(4096, 4096, 40), (4096, 77, 40), (1024, 1024, 80), (256, 77, 160), (64, 64, 160)])
@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16], ids=str)
def test_sd15_shapes_cuda(N, M, D, dtype):
    q, k, v = _qkv(2, 8, N, M, D, dtype, seed=N + M + D)
    _check(attention(q, k, v, backend="triton"), q, k, v)


def test_benchmark_quick_runs():
    """benchmarks/bench_attention.py's run() on tiny shapes (CPU: torch providers + the interpreter for one shape)."""
    import importlib.util
    from pathlib import Path

    path = Path(__file__).resolve().parents[2] / "benchmarks" / "bench_attention.py"
    spec = importlib.util.spec_from_file_location("bench_attention", path)
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    rows = bench.run(DEVICE, quick=True, reps=1)
    assert {"op", "provider", "shape", "dtype", "ms_p50", "p20", "p80", "tflops"} <= set(rows[0])
    timed = [r for r in rows if "ms_p50" in r]
    assert {"triton", "torch", "ref"} <= {r["provider"] for r in timed}
    for r in timed:
        assert r["p20"] <= r["ms_p50"] <= r["p80"] and r["tflops"] > 0
        assert r["tflops"] == pytest.approx(r["flops"] / (r["ms_p50"] * 1e-3) / 1e12)
    assert all(r["max_err"] < 1e-2 for r in timed if r["provider"] == "triton")
    assert bench.flops(2, 8, 4096, 4096, 40) == 4 * 2 * 8 * 4096 * 4096 * 40
    assert "| triton |" in bench.table(rows)
    common = sys.modules["common"]
    assert common.peak_tflops("NVIDIA H100 80GB HBM3", torch.float16) == 989.0
    assert common.peak_tflops("NVIDIA H100 PCIe", torch.bfloat16) == 756.0
    assert common.peak_tflops("NVIDIA H100 80GB HBM3", torch.float32) is None
