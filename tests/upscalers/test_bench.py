"""benchmarks/bench_upscalers.py runs end to end on a tiny tile and reports identical outputs (same weights)."""
from __future__ import annotations

import importlib.util
from pathlib import Path

BENCH = Path(__file__).resolve().parents[2] / "benchmarks" / "bench_upscalers.py"


def test_bench_upscalers_smoke(capsys, tmp_path):
    spec = importlib.util.spec_from_file_location("bench_upscalers", BENCH)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    csv = tmp_path / "rows.csv"
    assert mod.main(["--device", "cpu", "--size", "8", "--blocks", "1", "--repeats", "1", "--warmup", "0",
                     "--csv", str(csv)]) == 0
    out = capsys.readouterr().out
    assert "ratio" in out and "max|diff| 0.00e+00" in out
    assert len(csv.read_text().splitlines()) == 3  # header + inpaintlab + spandrel
