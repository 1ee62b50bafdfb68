"""The benchmark suite end to end on the CPU (benchmarks/run.py --device cpu --quick), its row schema, its markdown,
the FLOP model it divides by, and the --assert-speedup gate.

The subprocess runs with TRITON_INTERPRET=0: the Triton providers of the model sections are then skipped (under the
interpreter one call of even the tiny UNet takes tens of seconds), which is itself checked. The UNet and VAE rows must
agree with diffusers to fp32 round-off (max relative difference <= 5e-6; measured 1.4e-6 for the UNet and 9.8e-7
for the VAE with 2 threads, 0 and 1.1e-6 with 1 thread): diffusers loads our weights through its own ldm converter,
so this shows the suite times the same network three ways rather than three unrelated ones.
"""
from __future__ import annotations

import datetime
import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
BENCH = ROOT / "benchmarks"
SECTIONS = ("attention", "group_norm", "unet", "vae", "controlnet")
ROW_KEYS = ("section", "op", "provider", "shape", "dtype", "ms_p50", "ms_p20", "ms_p80", "tflops", "gb_s",
            "pct_peak", "status", "error", "note")
DIFFUSERS_REL_TOL = 5e-6  # max |ours - diffusers| / max |ours|; measured 1.4e-6 (UNet), 9.8e-7 (VAE)


@pytest.fixture(scope="module")
def bench():
    """benchmarks/run.py and bench_unet_step.py imported as modules (they import their folder's `common`)."""
    sys.path.insert(0, str(BENCH))
    try:
        import bench_unet_step
        import bench_vae_decode
        import run

        yield run, bench_unet_step, bench_vae_decode
    finally:
        sys.path.remove(str(BENCH))


@pytest.fixture(scope="module")
def common(bench):
    """benchmarks/common.py, the helpers the scripts share (imported by the scripts above)."""
    module = sys.modules["common"]
    assert Path(module.__file__).resolve() == BENCH / "common.py", module
    return module


@pytest.fixture(scope="module")
def quick_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("bench")
    json_path, md_path = out / "results.json", out / "results.md"
    env = dict(os.environ, TRITON_INTERPRET="0")
    proc = subprocess.run([sys.executable, str(BENCH / "run.py"), "--device", "cpu", "--quick", "--json",
                           str(json_path), "--md", str(md_path)], cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(json_path.read_text()), md_path.read_text(), proc.stdout


def test_metadata(quick_run):
    data, _, _ = quick_run
    meta = data["metadata"]
    assert meta["device"] == "cpu" and meta["device_name"].startswith("cpu")
    for key in ("torch", "triton", "diffusers", "git_commit", "python"):
        assert isinstance(meta[key], str) and meta[key], key
    assert meta["peak_fp16_tflops"] is None and meta["peak_hbm_gb_s"] is None  # no peaks for a CPU
    assert datetime.datetime.fromisoformat(meta["timestamp"]).tzinfo is not None
    assert meta["sections"] == list(SECTIONS) and meta["quick"] is True and meta["triton_interpret"] is False


def test_every_row_has_the_schema(quick_run):
    rows = quick_run[0]["rows"]
    assert {r["section"] for r in rows} == set(SECTIONS)
    for r in rows:
        assert set(ROW_KEYS) <= set(r), r
        assert r["device"] == quick_run[0]["metadata"]["device_name"]
        assert r["status"] in ("ok", "error", "skipped"), r
        if r["status"] == "ok":
            assert r["error"] is None
            assert 0 < r["ms_p20"] <= r["ms_p50"] <= r["ms_p80"], r
            assert r["tflops"] is not None or r["gb_s"] is not None, r
            assert r["pct_peak"] is None  # no peak on a CPU
        elif r["status"] == "error":
            assert isinstance(r["error"], str) and r["error"], r
            assert r["ms_p50"] is None
        else:
            assert isinstance(r["note"], str) and r["note"].startswith("skipped"), r
            assert r["ms_p50"] is None


@pytest.mark.parametrize("section, op", [("unet", "unet_step"), ("vae", "vae_decode"),
                                         ("controlnet", "unet_controlnet_step")])
def test_model_sections(quick_run, section, op):
    rows = {r["provider"]: r for r in quick_run[0]["rows"] if r["section"] == section}
    techniques = ["torch+tome0.5", "torch+pag"] if section == "unet" else []
    assert list(rows) == ["torch", "triton", "diffusers", *techniques]
    for provider in techniques:  # timed beside the plain step in the same run
        assert rows[provider]["status"] == "ok" and rows[provider]["ms_p50"] > 0, rows[provider]
    for provider in ("torch", "diffusers"):
        r = rows[provider]
        assert r["status"] == "ok" and r["op"] == op and r["dtype"] == "float32" and r["finite"], r
        assert r["flop"] > 0 and r["flop_source"] == "torch.utils.flop_counter"  # tiny config: counted, not spec
        assert math.isclose(r["tflops"], r["flop"] / (r["ms_p50"] * 1e-3) / 1e12, rel_tol=1e-9)
    assert rows["torch"]["max_abs_diff"] == 0.0
    assert rows["diffusers"]["max_rel_diff"] <= DIFFUSERS_REL_TOL, rows["diffusers"]
    triton = rows["triton"]
    assert triton["status"] == "skipped" and "TRITON_INTERPRET" in triton["note"]


def test_markdown_tables(quick_run):
    data, md, stdout = quick_run
    device = data["metadata"]["device_name"]
    assert md.strip() in stdout  # the tables are printed too
    headings = [line for line in md.splitlines() if line.startswith("## ")]
    assert len(headings) == len(SECTIONS) and all(h.endswith(f"— {device}") for h in headings)
    for block in md.split("\n## ")[1:]:
        lines = [line for line in block.splitlines() if line.startswith("|")]
        assert lines[0].startswith("| op | provider | shape | dtype | p50 ms | p20 ms | p80 ms |")
        assert set(lines[1]) <= set("|-")
        assert all(line.count("|") == lines[0].count("|") for line in lines[2:]), block
    table_rows = [line for line in md.splitlines() if line.startswith("| ") and not line.startswith("| op |")]
    assert len(table_rows) == len(data["rows"])


def test_flop_model_matches_the_spec(bench):
    """torch's FLOP counter over the real architectures (meta tensors) reproduces performance.md §2's figures that
    the CUDA rows divide by: 1.607 / 4.30 TFLOP per CFG step at 512²/768², 2.51 TFLOP per 512² VAE decode."""
    _, unet, vae = bench
    for (name, latent, batch), spec in unet.SPEC_FLOP.items():
        counted, source = unet.unet_flop(unet.Case(name, latent, batch), use_spec=False)
        assert source == "torch.utils.flop_counter"
        assert math.isclose(counted, spec, rel_tol=2e-3), (latent, counted, spec)
    for (name, latent, batch), spec in vae.SPEC_FLOP.items():
        counted, source = vae.vae_flop(name, latent, batch, use_spec=False)
        assert source == "torch.utils.flop_counter"
        assert math.isclose(counted, spec, rel_tol=2e-3), (latent, counted, spec)


def test_assert_speedup_gate(bench):
    run = bench[0]

    def rows(torch_ms, triton_ms):
        return [{"section": "unet", "shape": "2x4x64x64", "provider": "torch", "ms_p50": torch_ms},
                {"section": "unet", "shape": "2x4x64x64", "provider": "triton", "ms_p50": triton_ms},
                {"section": "vae", "shape": "1x4x64x64", "provider": "triton", "ms_p50": 99.0}]

    assert run.check_speedup(rows(10.0, 8.0), 1.0) == []
    assert run.check_speedup(rows(10.0, 8.0), 1.3)  # 1.25x is below a 1.3x threshold
    assert run.check_speedup(rows(10.0, 11.0), 1.0)  # slower
    assert run.check_speedup(rows(10.0, None), 1.0)  # no triton time (error or skipped) cannot pass
    assert run.parse_args(["--assert-speedup"]).assert_speedup == 1.0
    assert run.parse_args([]).assert_speedup is None  # off by default
    with pytest.raises(SystemExit):
        run.parse_args(["--only", "vae", "--assert-speedup"])
    with pytest.raises(SystemExit):
        run.parse_args(["--only", "unet,bogus"])


def test_rows_from_other_scripts_are_normalised(bench):
    run = bench[0]
    gn = run.normalize("group_norm", {"op": "group_norm_silu", "provider": "torch", "shape": (2, 320, 64, 64),
                                      "dtype": "float16", "p50": 0.1, "p20": 0.09, "p80": 0.12, "gbps": 900.0,
                                      "hbm_pct": 26.9, "net": "unet", "torch": "x"}, "cuda")
    assert (gn["ms_p50"], gn["ms_p20"], gn["ms_p80"], gn["gb_s"], gn["pct_peak"]) == (0.1, 0.09, 0.12, 900.0, 26.9)
    assert gn["shape"] == "2x320x64x64" and gn["status"] == "ok" and gn["net"] == "unet" and "torch" not in gn
    skipped = run.normalize("attention", {"provider": "triton", "error": "skipped: interpreter only"}, "cpu")
    assert skipped["status"] == "skipped" and skipped["error"] is None and skipped["note"].startswith("skipped")
    nan = run.normalize("vae", {"provider": "torch", "ms_p50": 1.0, "max_abs_diff": float("nan")}, "cuda")
    assert nan["max_abs_diff"] is None  # JSON has no NaN


@pytest.mark.parametrize("name, tflops, hbm", [
    # vendor figures; H100 PCIe's dense fp16 is the lower end of the quoted 756-800
    ("NVIDIA H100 80GB HBM3", 989.0, 3.35e12),  # what torch calls the H100 SXM5
    ("NVIDIA H100 SXM5 80GB", 989.0, 3.35e12),
    ("NVIDIA H100 PCIe", 756.0, 2.0e12),
    ("NVIDIA H200", 989.0, 4.8e12),
    ("NVIDIA A100-SXM4-80GB", 312.0, 2.0e12),
    # no figures in the spec: other parts that share a family name must not borrow a neighbour's peaks
    ("NVIDIA GH200 480GB", None, None),
    ("NVIDIA H100 NVL", None, None),
    ("NVIDIA H200 NVL", None, None),
    ("NVIDIA H800", None, None),
    ("NVIDIA A100-PCIE-40GB", None, None),
    ("NVIDIA A100-SXM4-40GB", None, None),
    ("NVIDIA GeForce RTX 4090", None, None),
    ("cpu", None, None),
])
def test_device_peaks(common, name, tflops, hbm):
    import torch

    assert common.peak_tflops(name, torch.float16) == tflops
    assert common.peak_tflops(name, torch.bfloat16) == tflops
    assert common.peak_tflops(name, torch.float32) is None  # fp32 runs without TF32: no tensor-core ceiling
    assert common.hbm_peak(name) == hbm


def test_kernel_script_helpers(common):
    """The speed gate and table code of bench_attention.py and bench_group_norm.py."""
    rows = [{"provider": "torch", "shape": "a", "p50": 2.0}, {"provider": "triton", "shape": "a", "p50": 1.0},
            {"provider": "torch", "shape": "b", "p50": 2.0}, {"provider": "triton", "shape": "b", "error": "x"}]
    problems = common.speedup_problems(rows, 1.5, key="shape", time_key="p50")
    assert len(problems) == 1 and problems[0].startswith("b:")  # a: 2x passes; b: no triton time fails
    assert len(common.speedup_problems(rows, 2.5, key="shape", time_key="p50")) == 2
    table = common.markdown_table("head", ["x", "y", "z"], [["1", "a|b", "3"], ["error: e\nf"]])
    assert table.splitlines() == ["head", "| x | y | z |", "|---|---|---|", "| 1 | a/b | 3 |", "| error: e f |  |  |"]
    meta = dict(device="cpu", dtype="float32", torch="t", triton="tr", git_commit="c")
    rows = [dict(meta, provider="torch", shape="s", p50=2.0, p20=1.5, p80=2.5, gbps=3.0, pct=None),
            dict(meta, provider="triton", shape="s", p50=0.5, p20=0.4, p80=0.6, gbps=12.0, pct=40.0, max_err=1e-3),
            dict(meta, provider="triton", shape="t", error="RuntimeError: no GPU"),
            dict(meta, provider="triton", shape="u", error="skipped: interpreter only")]
    lines = common.kernel_table(rows, [("shape", "shape")], time_key="p50", rate=("GB/s", "gbps", ".3g"),
                                pct=("%", "pct", ".0f"), base="torch").splitlines()
    assert lines[0] == "device: cpu  dtype: float32  torch t  triton tr  commit c"
    assert lines[1] == "| shape | provider | p50 ms | p20 ms | p80 ms | GB/s | % | vs torch | max err |"
    assert lines[3:] == ["| s | torch | 2.0000 | 1.5000 | 2.5000 | 3 | - | 1.00x |  |",
                         "| s | triton | 0.5000 | 0.4000 | 0.6000 | 12 | 40 | 4.00x | 1.00e-03 |",
                         "| t | triton | error: RuntimeError: no GPU |  |  |  |  |  |  |",
                         "| u | triton | skipped: interpreter only |  |  |  |  |  |  |"]


def test_default_result_paths(bench):
    run = bench[0]
    meta = {"device_name": "NVIDIA H100 80GB HBM3", "timestamp": "2026-01-02T03:04:05+00:00", "quick": False}
    assert run.default_path(meta, "json") == BENCH / "results" / "nvidia-h100-80gb-hbm3-2026-01-02.json"


@pytest.mark.cuda
def test_cuda_quick_model_sections(tmp_path):
    """On a GPU: the fp16 UNet step (512²) and VAE decode with all three providers, no errors, sane numbers.

    Tolerance: max |provider − torch provider| <= 5e-2 × max |torch output|, i.e. 100× fp16's unit roundoff
    (4.9e-4); the providers differ only in fp16 rounding (fused kernels vs cuDNN/cuBLAS paths)."""
    json_path = tmp_path / "cuda.json"
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    proc = subprocess.run([sys.executable, str(BENCH / "run.py"), "--device", "cuda", "--quick", "--only", "unet,vae",
                           "--json", str(json_path), "--md", str(tmp_path / "cuda.md")], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]
    data = json.loads(json_path.read_text())
    rows = data["rows"]
    assert [(r["section"], r["provider"]) for r in rows] == [(s, p) for s in ("unet", "vae")
                                                            for p in ("torch", "triton", "diffusers")]
    for r in rows:
        assert r["status"] == "ok" and r["dtype"] == "float16" and r["finite"], r
        assert r["flop_source"] == "performance.md §2" and r["timing"] == "triton.testing.do_bench"
        assert 0 < r["ms_p20"] <= r["ms_p50"] <= r["ms_p80"]
        assert r["max_rel_diff"] <= 5e-2, r
        if data["metadata"]["peak_fp16_tflops"]:
            assert 0 < r["pct_peak"] < 100


def test_every_run_says_where_its_results_went(bench, quick_run, tmp_path):
    run = bench[0]
    assert quick_run[2].strip().splitlines()[-1].startswith("written: ")
    assert run.results_note([]).startswith("no files written")
    assert run.results_note([tmp_path / "a.json"]) == f"written: {tmp_path / 'a.json'}"


def test_ratios_only_for_steady_times(bench):
    """A speed ratio is printed when both times are steady (p20..p80 within MAX_SPREAD of the median); otherwise the
    spreads are shown instead, since on a busy machine the ratio is noise."""
    run = bench[0]
    torch_row = {"ms_p50": 10.0, "ms_p20": 9.8, "ms_p80": 10.3}
    steady = {"ms_p50": 5.0, "ms_p20": 4.9, "ms_p80": 5.2}
    noisy = {"ms_p50": 5.0, "ms_p20": 3.0, "ms_p80": 9.0}
    assert run.MAX_SPREAD == 0.10
    assert run.spread(steady) == pytest.approx(0.06)
    assert run.ratio_text(torch_row, steady) == "2.00x"
    assert run.ratio_text(torch_row, noisy) == "noisy (spread 5%/120% > 10%)"
    assert run.ratio_text(None, steady) == "-" and run.ratio_text(torch_row, {"ms_p50": None}) == "-"
    meta = {"device_name": "cpu: test", "peak_fp16_tflops": None, "peak_hbm_gb_s": None, "git_commit": "c",
            "git_dirty": False, "timestamp": "t", "torch": "t", "triton": "t", "diffusers": "d", "quick": True,
            "triton_interpret": False, "sections": ["unet"]}
    rows = [{**{k: None for k in run.ROW_KEYS}, "section": "unet", "op": "unet_step", "provider": p, "shape": "s",
             **times} for p, times in (("torch", torch_row), ("triton", noisy))]
    md = run.markdown(meta, rows)
    assert "noisy (spread 5%/120% > 10%)" in md and "x |" not in md.split("| triton |")[1]
