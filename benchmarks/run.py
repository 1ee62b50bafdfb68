"""inpaintlab's benchmark suite in one command: attention, GroupNorm, the UNet step and the VAE decode on one device.

    python benchmarks/run.py --device cuda                      # writes benchmarks/results/<gpu>-<date>.{json,md}
    python benchmarks/run.py --device cpu --quick --json r.json --md r.md   # tiny smoke run (CI)
    python benchmarks/run.py --device cuda --only unet,vae --assert-speedup

Sections (each from its own script, called through its `run(device, quick) -> list[dict]`):
    attention   bench_attention.py    fused flash attention vs eager / SDPA backends, SD1.5 shapes
    group_norm  bench_group_norm.py   fused GroupNorm+SiLU vs eager, SD1.5 UNet and VAE-decoder shapes
    unet        bench_unet_step.py    one UNet call (CFG batch 2), SD1.5 512x512 and 768x768, SDXL 1024x1024:
                                      kernels="torch" vs "triton" vs diffusers' UNet2DConditionModel, same weights
    vae         bench_vae_decode.py   VAE decode 512x512 batch 1, the same three providers
    controlnet  bench_controlnet_step.py  one UNet + ControlNet call (CFG batch 2): torch vs triton vs diffusers'
                                      ControlNetModel feeding UNet2DConditionModel
    unet_cpu    bench_unet_cpu.py     (--device cpu without --quick) SD1.5-width UNet vs diffusers on the CPU

Every row has op, provider, shape, dtype, ms_p50, ms_p20, ms_p80, tflops, gb_s, pct_peak, status ("ok", "error" or
"skipped"), error and note, plus the section's own fields; a provider that fails records its error in its row and the
suite goes on. The JSON file is {"metadata": {...}, "rows": [...]}; the markdown file has one table per section,
with the device in each heading, and is also printed.
"""
from __future__ import annotations

import argparse
import importlib
import json
import math
import os
import platform
import re
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
if str(HERE) not in sys.path:
    sys.path.insert(0, str(HERE))

import common  # noqa: E402

# section -> (script module, table title)
SECTIONS = {
    "attention": ("bench_attention", "Attention (fused flash attention vs eager and SDPA)"),
    "group_norm": ("bench_group_norm", "GroupNorm+SiLU (fused Triton vs eager)"),
    "unet": ("bench_unet_step", "UNet step (one call, CFG batch 2)"),
    "vae": ("bench_vae_decode", "VAE decode (batch 1)"),
    "controlnet": ("bench_controlnet_step", "UNet + ControlNet step (one call each, CFG batch 2)"),
    "unet_cpu": ("bench_unet_cpu", "UNet on the CPU, SD1.5 width (ours vs diffusers)"),
}
DEFAULT_SECTIONS = ("attention", "group_norm", "unet", "vae", "controlnet")
ROW_KEYS = ("section", "op", "provider", "shape", "dtype", "ms_p50", "ms_p20", "ms_p80", "tflops", "gb_s",
            "pct_peak", "status", "error", "note")
# Keys other scripts may use for the same quantity (first match wins).
ALIASES = {"ms_p50": ("ms_p50", "p50"), "ms_p20": ("ms_p20", "p20"), "ms_p80": ("ms_p80", "p80"),
           "gb_s": ("gb_s", "gbps"), "pct_peak": ("pct_peak", "hbm_pct")}
# Run-wide fields that the metadata already holds; dropped from rows so a row is not a copy of the header.
RUN_WIDE = {"torch", "triton", "git_commit", "timestamp", "metric", "unit", "device"}
CSV_META = ("torch", "triton", "diffusers", "git_commit", "timestamp")
UNET_CPU = dict(batch=2, latent=32, tokens=77)  # issue: SD1.5 width, 32x32 latents, batch 2
# A speed ratio is printed only when both times are steady: their p20..p80 spread within this share of the median.
# On a busy machine (other processes, a shared CPU) the spread grows and the ratio would be noise.
MAX_SPREAD = 0.10


def metadata(device: str, args: argparse.Namespace, sections: list[str]) -> dict:
    import torch

    def version(module: str) -> str:
        try:
            return importlib.import_module(module).__version__
        except Exception as exc:  # the metadata must not stop the run
            return f"unavailable ({type(exc).__name__})"

    if device == "cuda":
        name = torch.cuda.get_device_name()
        fp16_peak = common.peak_tflops(name, torch.float16)
        hbm = common.hbm_peak(name)
    else:
        name, fp16_peak, hbm = f"cpu: {common.cpu_name()}", None, None
    return {
        "device": device, "device_name": name, "gpu_name": name if device == "cuda" else None,
        "peak_fp16_tflops": fp16_peak, "peak_hbm_gb_s": None if hbm is None else hbm / 1e9,
        "torch": torch.__version__, "triton": version("triton"), "diffusers": version("diffusers"),
        "cuda": torch.version.cuda, "python": platform.python_version(), "cpu": common.cpu_name(),
        "cpu_threads": torch.get_num_threads(),
        "git_commit": common.git_commit(),
        # uncommitted edits to the measured library code make the commit alone not reproduce the numbers
        "git_dirty": bool(common.git("status", "--porcelain", "--untracked-files=no", "--", "inpaintlab")),
        "timestamp": common.utc_timestamp(),
        "quick": args.quick, "sections": sections, "triton_interpret": os.environ.get("TRITON_INTERPRET") == "1",
        "command": " ".join(["python", "benchmarks/run.py", *args.argv]),
    }


def _finite(value):
    if isinstance(value, float) and not math.isfinite(value):
        return None  # JSON has no NaN/inf; the row's `finite` flag and error say what happened
    return value


def normalize(section: str, raw: dict, device: str) -> dict:
    """One row in the suite's schema from a section script's row (which may name its fields differently)."""
    row = {key: None for key in ROW_KEYS}
    row["section"] = section
    used = set()
    for key in ("op", "provider", "shape", "dtype", "tflops", "error", "note", "status"):
        if key in raw:
            row[key], _ = raw[key], used.add(key)
    for key, names in ALIASES.items():
        for name in names:
            if raw.get(name) is not None:
                row[key], _ = raw[name], used.add(name)
                break
        used.update(n for n in names if n in raw)
    if isinstance(row["shape"], (tuple, list)):
        row["shape"] = "x".join(map(str, row["shape"]))
    row["op"] = row["op"] or section
    for key, value in raw.items():
        if key not in used and key not in RUN_WIDE and key not in row:
            row[key] = value
    if row["error"] is not None and str(row["error"]).startswith("skipped"):
        row["status"], row["note"], row["error"] = "skipped", row["error"], None
    if row["status"] not in ("ok", "error", "skipped"):
        row["status"] = "error" if row["error"] is not None else ("ok" if row["ms_p50"] is not None else "skipped")
    # A Triton provider that refused CPU tensors because the interpreter is off was skipped, not broken.
    if (device == "cpu" and row["provider"] == "triton" and row["status"] == "error"
            and os.environ.get("TRITON_INTERPRET") != "1"):
        row.update(status="skipped", note=f"skipped: TRITON_INTERPRET is not 1 ({row['error']})", error=None)
    return {key: _finite(value) for key, value in row.items()}


def section_error(section: str, exc: BaseException | str) -> dict:
    text = exc if isinstance(exc, str) else common.error_text(exc)
    return normalize(section, {"op": section, "provider": "-", "error": text}, "cpu")


def unet_cpu_rows(module, quick: bool) -> list[dict]:
    """bench_unet_cpu through its public API: `run(device, quick)` if it has one, else its `build_models`."""
    if hasattr(module, "run"):
        return module.run("cpu", quick)
    if not hasattr(module, "build_models"):
        return [{"op": "unet_step", "provider": "-", "error": "skipped: bench_unet_cpu has no run() or build_models()"}]
    import bench_unet_step as ub
    import torch

    ours, theirs = module.build_models(4, 0)
    g = torch.Generator().manual_seed(1)
    b, s, n = UNET_CPU["batch"], UNET_CPU["latent"], UNET_CPU["tokens"]
    x = torch.randn(b, 4, s, s, generator=g)
    context = torch.randn(b, n, 768, generator=g)
    t = torch.full((b,), 981.0)
    flop, source = ub.unet_flop(ub.Case("sd15", s, b, n))
    base = dict(op="unet_step", shape=f"{b}x4x{s}x{s}", dtype="float32", config="sd15", image=f"{8 * s}x{8 * s}",
                context=f"{b}x{n}x768", flop=flop, flop_source=source)
    providers = {"torch": lambda: (lambda: ours(x, t, context)),
                 "diffusers": lambda: (lambda: theirs(x, t, encoder_hidden_states=context, return_dict=False)[0])}
    return ub.time_providers(providers, base, device="cpu", flop=flop, peak_tflops=None, cpu_reps=3)


def run_section(section: str, device: str, quick: bool) -> list[dict]:
    module_name = SECTIONS[section][0]
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if exc.name == module_name:
            return [section_error(section, f"skipped: benchmarks/{module_name}.py is not present")]
        return [section_error(section, exc)]
    except Exception as exc:
        return [section_error(section, exc)]
    try:
        raw = unet_cpu_rows(module, quick) if section == "unet_cpu" else module.run(device, quick)
    except Exception as exc:  # a whole section failing is one error row; the other sections still run
        return [section_error(section, exc)]
    return [normalize(section, r, device) for r in raw]


# ---------------------------------------------------------------------------------------------------------- output


def _num(value, digits: int = 3) -> str:
    if value is None:
        return "-"
    if abs(value) >= 100:
        return f"{value:.1f}"
    if abs(value) >= 1:
        return f"{value:.{digits}f}"
    return f"{value:.{digits + 1}f}"


def _label(row: dict) -> str:
    prefix = row.get("case") or row.get("net") or row.get("image")
    return f"{prefix} {row['shape']}" if prefix and row["shape"] else str(prefix or row["shape"] or "-")


def spread(row: dict) -> float | None:
    """(p80 - p20) / p50 of a row's times, or None when it has no times."""
    if not row.get("ms_p50") or row.get("ms_p20") is None or row.get("ms_p80") is None:
        return None
    return (row["ms_p80"] - row["ms_p20"]) / row["ms_p50"]


def ratio_text(base: dict | None, row: dict) -> str:
    """`base` time / `row` time as "1.93x", or why there is no ratio: a missing time, or a spread above MAX_SPREAD
    (then the spreads are printed instead, so the reader sees the numbers are noise)."""
    if base is None or not base.get("ms_p50") or not row.get("ms_p50"):
        return "-"
    spreads = [spread(base), spread(row)]
    if any(s is None or s > MAX_SPREAD for s in spreads):
        shown = "/".join("?" if s is None else f"{100 * s:.0f}%" for s in spreads)
        return f"noisy (spread {shown} > {100 * MAX_SPREAD:.0f}%)"
    return f"{base['ms_p50'] / row['ms_p50']:.2f}x"


def markdown(meta: dict, rows: list[dict]) -> str:
    device = meta["device_name"]
    peaks = []
    if meta["peak_fp16_tflops"]:
        peaks.append(f"dense fp16 peak {meta['peak_fp16_tflops']:g} TFLOP/s")
    if meta["peak_hbm_gb_s"]:
        peaks.append(f"HBM {meta['peak_hbm_gb_s']:g} GB/s")
    out = [f"# inpaintlab benchmarks — {device}", "",
           f"commit {meta['git_commit']}{' (library edited since)' if meta['git_dirty'] else ''}, {meta['timestamp']}; "
           f"torch {meta['torch']}, triton {meta['triton']}, diffusers {meta['diffusers']}"
           + (f"; {', '.join(peaks)}" if peaks else "")
           + ("; quick" if meta["quick"] else "")
           + ("; TRITON_INTERPRET=1" if meta["triton_interpret"] else ""), ""]
    for section in meta["sections"]:
        sect_rows = [r for r in rows if r["section"] == section]
        out += [f"## {SECTIONS[section][1]} — {device}", ""]
        if any(r["pct_peak"] is not None for r in sect_rows):
            basis = "HBM bandwidth" if any(r["gb_s"] is not None for r in sect_rows) else "dense fp16 tensor-core peak"
            out += [f"% peak: share of the card's {basis} ({', '.join(peaks)}).", ""]
        out += [f"vs torch: the ratio of medians, printed only when both rows' p20..p80 spread is within "
                f"{100 * MAX_SPREAD:.0f}% of their median.", ""]
        out += [("| op | provider | shape | dtype | p50 ms | p20 ms | p80 ms | spread | TFLOP/s | GB/s | % peak | "
                 "vs torch | max rel diff | notes |"),
                "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
        torch_rows = {(r["op"], _label(r)): r for r in sect_rows if r["provider"] == "torch" and r["ms_p50"]}
        for r in sect_rows:
            speed = ratio_text(torch_rows.get((r["op"], _label(r))), r)
            diff = r.get("max_rel_diff")
            note = r["error"] and f"error: {r['error']}" or r["note"] or ""
            steady = "-" if spread(r) is None else f"{100 * spread(r):.0f}%"
            out.append("| " + " | ".join(common.cell(c) for c in (
                r["op"], r["provider"], _label(r), r["dtype"] or "-", _num(r["ms_p50"]), _num(r["ms_p20"]),
                _num(r["ms_p80"]), steady, _num(r["tflops"]), _num(r["gb_s"], 1), _num(r["pct_peak"], 1), speed,
                "-" if diff is None else f"{diff:.1e}", note)) + " |")
        out.append("")
    return "\n".join(out)


def default_path(meta: dict, suffix: str) -> Path:
    """benchmarks/results/<gpu>-<date>.<suffix> (a -quick tag keeps smoke runs apart from full ones)."""
    gpu = re.sub(r"[^a-z0-9]+", "-", meta["device_name"].lower()).strip("-")
    tag = "-quick" if meta["quick"] else ""
    return HERE / "results" / f"{gpu}-{meta['timestamp'][:10]}{tag}.{suffix}"


def results_note(written: list[Path]) -> str:
    """The run's last word on where its results went (or that they were only printed)."""
    if written:
        return f"written: {', '.join(str(p) for p in written)}"
    return ("no files written: the results above were only printed (pass --json, --md or --csv to keep them; "
            "--device cuda writes benchmarks/results/ by default)")


def check_speedup(rows: list[dict], factor: float) -> list[str]:
    """Problems with the UNet step: Triton missing a time, or slower than `factor` x torch's speed."""
    unet = [r for r in rows if r["section"] == "unet"]
    return [f"unet {p}" for p in common.speedup_problems(unet, factor, key="shape", time_key="ms_p50")]


def parse_args(argv: list[str]) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0],
                                 formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    ap.add_argument("--device", choices=("cuda", "cpu"), default="cuda")
    ap.add_argument("--quick", action="store_true", help="few shapes; on the CPU tiny models (CI smoke run)")
    ap.add_argument("--only", default=None,
                    help=f"comma-separated sections out of {','.join(SECTIONS)} (default: all that apply)")
    ap.add_argument("--json", type=Path, default=None,
                    help="results file (default with --device cuda: benchmarks/results/<gpu>-<date>.json)")
    ap.add_argument("--md", type=Path, default=None,
                    help="markdown tables (default with --device cuda: benchmarks/results/<gpu>-<date>.md)")
    ap.add_argument("--csv", type=Path, default=None,
                    help="also append the rows, each with the device, versions, commit and timestamp, to this CSV")
    ap.add_argument("--assert-speedup", type=float, nargs="?", const=1.0, default=None, metavar="FACTOR",
                    help="exit 1 unless the Triton UNet step is at least FACTOR (default 1.0) times as fast as torch")
    args = ap.parse_args(argv)
    args.argv = argv
    if args.only:
        args.sections = [s.strip() for s in args.only.split(",") if s.strip()]
        unknown = [s for s in args.sections if s not in SECTIONS]
        if unknown:
            ap.error(f"--only: unknown section(s) {', '.join(unknown)}; choose from {', '.join(SECTIONS)}")
    else:
        args.sections = list(DEFAULT_SECTIONS) + (["unet_cpu"] if args.device == "cpu" and not args.quick else [])
    if args.assert_speedup is not None and "unet" not in args.sections:
        ap.error("--assert-speedup checks the UNet step: include the unet section")
    return args


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = parse_args(argv)
    # The interpreter is chosen when the kernels are imported, so settle it before anything imports triton.
    if args.device == "cuda" and os.environ.get("TRITON_INTERPRET") == "1":
        print("run.py: TRITON_INTERPRET=1 would run the Triton kernels in the interpreter; unset it for --device cuda",
              file=sys.stderr)
        return 2
    if args.device == "cpu":
        os.environ.setdefault("TRITON_INTERPRET", "0")  # skipped unless the caller asked for the interpreter
    import torch

    if args.device == "cuda" and not torch.cuda.is_available():
        print("run.py: --device cuda needs a GPU (use --device cpu --quick for a smoke run)", file=sys.stderr)
        return 2
    meta = metadata(args.device, args, args.sections)
    rows: list[dict] = []
    meta["section_seconds"] = {}
    for section in args.sections:
        start = time.perf_counter()
        # STYLE §9: every row names the card (the suite's name for it, one per run)
        rows += [{**r, "device": meta["device_name"]} for r in run_section(section, args.device, args.quick)]
        meta["section_seconds"][section] = round(time.perf_counter() - start, 2)
        print(f"run.py: {section} done in {meta['section_seconds'][section]:.1f} s", file=sys.stderr, flush=True)
        if args.device == "cuda":
            torch.cuda.empty_cache()
    text = markdown(meta, rows)
    json_path = args.json or (default_path(meta, "json") if args.device == "cuda" else None)
    md_path = args.md or (default_path(meta, "md") if args.device == "cuda" else None)
    for path, content in ((json_path, json.dumps({"metadata": meta, "rows": rows}, indent=1)), (md_path, text)):
        if path is not None:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(content + "\n")
    if args.csv is not None:  # STYLE §9's long-format log: one line per row, every line names the card
        stamp = {k: meta[k] for k in CSV_META}
        common.append_csv(args.csv, [{**r, **stamp} for r in rows], [*ROW_KEYS, "device", *CSV_META])
    print(text)
    print(results_note([p for p in (json_path, md_path, args.csv) if p]))
    if args.assert_speedup is None:
        return 0
    return common.speedup_gate(check_speedup(rows, args.assert_speedup))


if __name__ == "__main__":
    sys.exit(main())
