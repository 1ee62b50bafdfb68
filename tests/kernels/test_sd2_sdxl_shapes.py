"""The Triton kernels at SD 2.x / SDXL shapes, small enough for Triton's interpreter: 64-wide heads with 5, 10 and
20 heads (self- and 77-token cross-attention), and GroupNorm at SDXL's channel counts (320 ... 2560, 32 groups).

Same oracles and tolerances as test_attention.py / test_group_norm.py (flash-attn's rule against float64); the
full-size launches are compiled for sm_90 by benchmarks/kernel_report.py (test_kernel_report.py).
"""
import pytest
import torch
from test_attention import _check as check_attention
from test_attention import _qkv
from test_group_norm import _check as check_group_norm
from test_group_norm import _inputs

from inpaintlab.kernels.attention import attention_triton, sd2_sdxl_attention_shapes
from inpaintlab.kernels.group_norm import SDXL_SHAPES, group_norm_triton


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16], ids=str)
@pytest.mark.parametrize("H,N,M", [(5, 36, 36), (10, 16, 77), (20, 9, 77)])
def test_attention_head_dim_64(H, N, M, dtype):
    q, k, v = _qkv(1, H, N, M, 64, dtype, seed=H)
    check_attention(attention_triton(q, k, v), q, k, v)


def test_shape_tables_use_64_wide_heads():
    shapes = sd2_sdxl_attention_shapes()
    assert {d for *_, d in shapes} == {64}
    assert ("sdxl 1024px level2 cross", 2, 20, 1024, 77, 64) in shapes
    assert {c for _, _, c, _, _ in SDXL_SHAPES} >= {320, 640, 960, 1280, 1920, 2560}


@pytest.mark.parametrize("channels,side,silu", [(320, 4, True), (960, 3, True), (1920, 2, False), (2560, 2, True)])
def test_group_norm_sdxl_channels(channels, side, silu):
    x, w, b = _inputs((2, channels, side, side), torch.float16, seed=channels)
    check_group_norm(group_norm_triton(x, 32, w, b, 1e-5, silu=silu), x, 32, w, b, 1e-5, silu)
