"""Helpers shared by the benchmark scripts: timing, device peaks, run metadata, CSV rows, the scripts' command line
and their markdown tables.

Scripts in this folder import it as ``common`` (their own folder is on sys.path when run as scripts; importers that
load a script by path call ``add_to_path()`` first). Nothing here runs at import.
"""
from __future__ import annotations

import argparse
import csv
import datetime
import json
import platform
import re
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
# do_bench's warm-up and measuring time (ms) in time_cuda; see there
CUDA_WARMUP_MS, CUDA_REP_MS = 100, 500

# Vendor data sheets: dense fp16/bf16 tensor-core TFLOP/s and HBM bytes/s of the cards it has figures for
CARDS = {
    "H100 SXM": (989.0, 3.35e12),
    "H100 PCIe": (756.0, 2.0e12),  # §3 quotes 756-800 dense; the lower figure, so % of peak is not understated
    "H200": (989.0, 4.8e12),
    "A100 SXM 80GB": (312.0, 2.0e12),
}


def add_to_path() -> None:
    """Make ``import common`` work for a benchmark module loaded by file path (e.g. from a test)."""
    here = str(Path(__file__).resolve().parent)
    if here not in sys.path:
        sys.path.insert(0, here)


def git(*argv: str) -> str:
    """stdout of a git command in the repository, "" when git is missing or fails (metadata must not stop a run)."""
    try:
        res = subprocess.run(["git", *argv], cwd=REPO, capture_output=True, text=True, timeout=30, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return ""
    return res.stdout.strip() if res.returncode == 0 else ""


def git_commit() -> str:
    return git("rev-parse", "--short", "HEAD") or "unknown"


def utc_timestamp() -> str:
    return datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")


def run_metadata(device_name: str) -> dict:
    """Fields every result row carries (STYLE §9): device, library versions, commit, UTC timestamp."""
    import torch

    try:
        import triton

        triton_version = triton.__version__
    except ImportError:
        triton_version = "not installed"
    return dict(device=device_name, torch=torch.__version__, triton=triton_version, git_commit=git_commit(),
                timestamp=utc_timestamp())


def cpu_name() -> str:
    """CPU model from /proc/cpuinfo where there is one (Linux), else platform's answer."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def device_name(device: str) -> str:
    """The GPU's marketing name (it tells SXM from PCIe), or a CPU label."""
    import torch

    if device == "cuda":
        return torch.cuda.get_device_name()
    return "cpu"


def check_device(script: str, device: str) -> None:
    """Raise a clear error when a CUDA run is asked for on a machine without a GPU."""
    import torch

    if device == "cuda" and not torch.cuda.is_available():
        raise RuntimeError(f"{script}: --device cuda needs a GPU (use --device cpu for a smoke run)")


def card(name: str) -> str | None:
    """The CARDS key for a torch.cuda.get_device_name() string, None for a card without figures in the spec.

    Names are matched word by word, so "NVIDIA GH200 480GB" (a different memory system) is not an H200. The H100 SXM5
    calls itself "NVIDIA H100 80GB HBM3"; the H100 NVL, H800, H200 NVL (a lower power limit than the SXM part) and
    A100s other than the 80 GB SXM4 get None rather than a neighbour's figures.
    """
    words = set(re.split(r"[^A-Z0-9]+", name.upper()))
    if "H200" in words:
        return None if "NVL" in words else "H200"
    if "H100" in words:
        if "PCIE" in words:
            return "H100 PCIe"
        if "NVL" not in words and ("HBM3" in words or any(w.startswith("SXM") for w in words)):
            return "H100 SXM"
        return None
    if "A100" in words and any(w.startswith("SXM") for w in words) and "80GB" in words:
        return "A100 SXM 80GB"
    return None


def peak_tflops(name: str, dtype) -> float | None:
    """Dense fp16/bf16 tensor-core peak (TFLOP/s) of the cards listed here (vendor data sheets); None when unknown or for
    other dtypes (fp32 kernels here run without TF32, so the tensor-core peak would not be their ceiling)."""
    import torch

    key = card(name)
    if key is None or dtype not in (torch.float16, torch.bfloat16):
        return None
    return CARDS[key][0]


def hbm_peak(name: str) -> float | None:
    """HBM bandwidth in bytes/s of the cards listed here (vendor data sheets), None when unknown."""
    key = card(name)
    return None if key is None else CARDS[key][1]


def quantiles_ms(times: Sequence[float]) -> tuple[float, float, float]:
    """(median, 20th, 80th percentile) of a list of times."""
    if len(times) == 1:
        return times[0], times[0], times[0]
    q = statistics.quantiles(times, n=10, method="inclusive")
    return statistics.median(times), q[1], q[7]


def time_cpu(fn: Callable[[], object], reps: int = 5) -> tuple[float, float, float]:
    """(p50, p20, p80) in ms over `reps` timed runs after one warm-up."""
    fn()
    times = []
    for _ in range(reps):
        t0 = time.perf_counter()
        fn()
        times.append((time.perf_counter() - t0) * 1e3)
    return quantiles_ms(times)


def time_cuda(fn: Callable[[], object]) -> tuple[float, float, float]:
    """(p50, p20, p80) in ms from triton.testing.do_bench (CUDA events; it flushes L2 before every call).

    do_bench runs as many calls as fit in its `rep` time after `warmup` ms of untimed ones. Its default 100 ms leaves
    only ~10 samples for a 10 ms call, too few for stable 20th/80th percentiles; 500 ms gives >= 50 samples for any
    kernel under 10 ms (thousands for the microsecond GroupNorms) at ~0.6 s per provider and shape.
    """
    import triton.testing

    p50, p20, p80 = triton.testing.do_bench(fn, warmup=CUDA_WARMUP_MS, rep=CUDA_REP_MS, quantiles=[0.5, 0.2, 0.8])
    return p50, p20, p80


def error_text(exc: BaseException, limit: int = 300) -> str:
    """One line naming the exception, at most `limit` characters."""
    text = f"{type(exc).__name__}: {exc}".replace("\n", " ")
    return text if len(text) <= limit else text[:limit - 3] + "..."


def cell(text: object) -> str:
    """`text` safe inside a markdown table cell (no pipes, one line)."""
    return str(text).replace("|", "/").replace("\n", " ")


def append_csv(path: Path, rows: Iterable[dict], fields: list[str]) -> None:
    """Append rows (missing fields left empty, extra ones ignored); writes the header for a new file."""
    new = not path.exists()
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a", newline="") as f:
        w = csv.DictWriter(f, fieldnames=fields, extrasaction="ignore")
        if new:
            w.writeheader()
        w.writerows(rows)


# ------------------------------------------------------------------------------ kernel scripts' CLI and tables


def kernel_arg_parser(doc: str, csv_example: str, speedup_help: str) -> argparse.ArgumentParser:
    """The options every kernel benchmark script takes: --device, --quick, --json, --csv, --assert-speedup."""
    ap = argparse.ArgumentParser(description=doc.split("\n")[0], formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    ap.add_argument("--device", choices=("cuda", "cpu"), default="cuda")
    ap.add_argument("--quick", action="store_true", help="a few shapes only")
    ap.add_argument("--json", type=Path, help="write the rows here")
    ap.add_argument("--csv", type=Path, help=f"append the rows here (e.g. {csv_example})")
    ap.add_argument("--assert-speedup", type=float, default=None, help=speedup_help)
    return ap


def finish_kernel_run(args: argparse.Namespace, rows: list[dict], table: Callable[[list[dict]], str],
                      csv_fields: list[str], *, key: str, time_key: str, base: str = "torch") -> int:
    """The end of a kernel script's main(): print the table, write --json (all rows) and --csv (appended), and
    return --assert-speedup's exit status (0 without it)."""
    print(table(rows))
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(rows, indent=1))
    if args.csv:
        append_csv(args.csv, rows, csv_fields)
    if args.assert_speedup is None:
        return 0
    return speedup_gate(speedup_problems(rows, args.assert_speedup, key=key, time_key=time_key, base=base))


def p50_by(rows: Iterable[dict], key: str, provider: str, time_key: str) -> dict:
    """{row[key]: row[time_key]} over `provider`'s rows that have a time."""
    return {r[key]: r[time_key] for r in rows if r.get("provider") == provider and r.get(time_key)}


def speedup_problems(rows: list[dict], factor: float, *, key: str, time_key: str, ours: str = "triton",
                     base: str = "torch") -> list[str]:
    """One line per `key` value where `ours` lacks a time or is less than `factor` times as fast as `base` (a
    missing time counts as a failure: an error or a skip must not pass a speed gate)."""
    mine, theirs = p50_by(rows, key, ours, time_key), p50_by(rows, key, base, time_key)
    problems = []
    for k in dict.fromkeys(r[key] for r in rows if r.get("provider") in (ours, base)):
        if k not in mine or k not in theirs:
            times = ", ".join(f"{name} " + (f"{t[k]:.4g} ms" if k in t else "none")
                              for name, t in ((base, theirs), (ours, mine)))
            problems.append(f"{k}: no {base}/{ours} timing to compare ({times})")
        elif theirs[k] / mine[k] < factor:
            problems.append(f"{k}: {ours} {mine[k]:.4g} ms vs {base} {theirs[k]:.4g} ms "
                            f"(speed-up {theirs[k] / mine[k]:.3f}x < {factor}x)")
    return problems


def speedup_gate(problems: list[str]) -> int:
    """Exit status of --assert-speedup: the problems go to stderr, 1 if there are any."""
    for problem in problems:
        print(f"assert-speedup: {problem}", file=sys.stderr)
    return 1 if problems else 0


def markdown_table(header: str, columns: Sequence[str], body: Iterable[Sequence[str]]) -> str:
    """`header`, then a markdown table; a row with fewer cells than columns (an error row) is padded with empties."""
    out = [header, "| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    for cells in body:
        cells = [cell(c) for c in cells]
        out.append("| " + " | ".join(cells + [""] * (len(columns) - len(cells))) + " |")
    return "\n".join(out)


def kernel_table(rows: list[dict], labels: Sequence[tuple[str, str]], *, time_key: str, rate: tuple[str, str, str],
                 pct: tuple[str, str, str], base: str) -> str:
    """A kernel script's markdown table: the `labels` columns ((header, row key) pairs, the last one the shape), the
    provider, p50/p20/p80 ms, a throughput `rate` and `pct` of peak ((header, row key, format) each), the speed-up
    against the `base` provider on the same shape, and max err; a row without `time_key` shows its error or skip."""
    if not rows:
        return "(no rows)"
    shape_key = labels[-1][1]
    base_ms = p50_by(rows, shape_key, base, time_key)
    body = []
    for r in rows:
        cells = [r[key] for _, key in labels] + [r["provider"]]
        if r.get(time_key) is None:
            text = r.get("error") or ""
            body.append(cells + [text if text.startswith("skipped") else f"error: {text}"])
            continue
        pct_value = r.get(pct[1])
        speed = f"{base_ms[r[shape_key]] / r[time_key]:.2f}x" if r[shape_key] in base_ms else "-"
        err = "" if r.get("max_err") is None else f"{r['max_err']:.2e}"
        body.append(cells + [f"{r[time_key]:.4f}", f"{r['p20']:.4f}", f"{r['p80']:.4f}", format(r[rate[1]], rate[2]),
                             "-" if pct_value is None else format(pct_value, pct[2]), speed, err])
    columns = [h for h, _ in labels] + ["provider", "p50 ms", "p20 ms", "p80 ms", rate[0], pct[0], f"vs {base}",
                                        "max err"]
    return markdown_table(run_header(rows[0]), columns, body)


def run_header(row: dict) -> str:
    """The line above a kernel script's table: device, dtype, versions, commit (from the first row's metadata)."""
    return (f"device: {row['device']}  dtype: {row['dtype']}  torch {row['torch']}  triton {row['triton']}  "
            f"commit {row['git_commit']}")
