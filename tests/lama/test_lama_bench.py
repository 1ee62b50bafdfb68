"""benchmarks/bench_segment_sam2_lama.py runs (LaMa rows, tiny generator) and reports zero difference to spandrel."""
import json
import sys
from pathlib import Path

BENCH = Path(__file__).resolve().parents[2] / "benchmarks"


def test_lama_rows(tmp_path):
    sys.path.insert(0, str(BENCH))
    try:
        import bench_segment_sam2_lama as bench
    finally:
        sys.path.remove(str(BENCH))
    out = tmp_path / "rows.json"
    assert bench.main(["--device", "cpu", "--only", "lama", "--lama-size", "32", "--tiny-lama", "--reps", "1", "--json",
                       str(out), "--md", str(tmp_path / "rows.md")]) == 0
    rows = json.loads(out.read_text())["rows"]
    assert [r["provider"] for r in rows] == ["ours", "spandrel"]
    assert all(r["max_err"] == 0 and r["ms_p50"] > 0 and r["shape"] == "1x4x32x32" for r in rows)
    assert "speed vs ref" in (tmp_path / "rows.md").read_text()
