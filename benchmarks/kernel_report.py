"""Ahead-of-time sm_90 report of every shipped Triton kernel configuration; needs no GPU.

    python benchmarks/kernel_report.py [--json PATH] [--csv PATH] [--module inpaintlab.kernels.group_norm ...]

Each kernel module exposes `kernel_configs() -> list[dict]`, one dict per launch it makes for the SD1.5 shapes:

    kernel     short name, e.g. "group_norm_apply"
    fn         the @triton.jit function
    args       {parameter name: value} exactly as the launcher passes them: tensors (the meta device is fine:
               only dtype and alignment matter), ints, floats, bools, None, and the constexpr values
    num_warps, num_stages
    label      the shape it serves, e.g. "unet 2x320x64x64" (identical compilations are merged, labels listed)
  optional expectations, checked here and by tests/kernels/test_kernel_report.py:
    max_spill_bytes   (default 0)    spill stores + loads reported by ptxas
    min_warps_per_sm  (default none) resident warps per SM allowed by registers and shared memory
    expect_mma        (default False) the SASS must contain tensor-core MMA (HGMMA or HMMA)

The arguments are specialised the way Triton's JIT does it at launch (ints equal to 1 become constants, ints and
pointers divisible by 16 get the divisibility hint that enables 128-bit loads), compiled with
`triton.compile(ASTSource(fn, signature, constexprs, attrs), target=GPUTarget("cuda", 90, 32), ...)`, and the cubin
is inspected with the tools shipped in the Triton wheel (triton/backends/nvidia/bin): `cuobjdump -res-usage`
(registers, stack, shared, local memory), `ptxas -v` rerun on the PTX with Triton's flags (spill bytes) and
`nvdisasm` (SASS instruction counts).

Compiling needs Triton's real JIT, so TRITON_INTERPRET is removed from the environment before triton is imported;
run this in its own process (the tests do).
"""
from __future__ import annotations

import os

os.environ.pop("TRITON_INTERPRET", None)  # triton.jit picks interpreter vs compiler when a kernel module is imported
os.environ.setdefault("TRITON_DEFAULT_FP_FUSION", "1")  # Triton 3.9's default, stated to silence its warning

import argparse  # noqa: E402
import importlib  # noqa: E402
import json  # noqa: E402
import re  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

if str(Path(__file__).resolve().parent) not in sys.path:  # `common` when this file is loaded by path
    sys.path.insert(0, str(Path(__file__).resolve().parent))

import torch  # noqa: E402
import triton  # noqa: E402
from triton._C.libtriton import native_specialize_impl  # noqa: E402
from triton.backends.compiler import GPUTarget  # noqa: E402
from triton.backends.nvidia.compiler import get_ptxas  # noqa: E402
from triton.compiler import ASTSource  # noqa: E402
from triton.compiler.compiler import make_backend  # noqa: E402

import common  # noqa: E402

MODULES = ("inpaintlab.kernels.group_norm", "inpaintlab.kernels.attention")
TARGET = GPUTarget("cuda", 90, 32)
BIN = Path(triton.__file__).parent / "backends" / "nvidia" / "bin"
REGS_PER_SM, MAX_WARPS_PER_SM, MAX_BLOCKS_PER_SM, SMEM_PER_SM = 65536, 64, 32, 228 * 1024  # sm_90

# SASS opcode classes counted per kernel (opcode = first token after an optional predicate)
SASS_CLASSES = {
    "HGMMA": lambda op: op.startswith("HGMMA"),  # Hopper warpgroup tensor-core MMA
    "HMMA": lambda op: op.startswith("HMMA"),  # warp-level tensor-core MMA
    "MUFU.EX2": lambda op: op.startswith("MUFU.EX2"),
    "MUFU": lambda op: op.startswith("MUFU"),
    "LDG": lambda op: op.startswith("LDG"),
    "LDG.128": lambda op: op.startswith("LDG") and ".128" in op,  # 16-byte vectorised global loads
    "STG.128": lambda op: op.startswith("STG") and ".128" in op,
    "LDGSTS": lambda op: op.startswith("LDGSTS"),  # cp.async global -> shared
    "TMA": lambda op: op.startswith(("UTMALDG", "UTMASTG", "UBLKCP")),
    "BAR": lambda op: op.startswith("BAR"),
    "LDL/STL": lambda op: op.startswith(("LDL", "STL")),  # local memory (spills)
}
COLUMNS = ["kernel", "config", "regs", "spill_st", "spill_ld", "local", "smem", "warps/SM", "HGMMA", "HMMA",
           "MUFU.EX2", "LDG.128", "LDG", "STG.128", "LDGSTS", "TMA", "BAR", "sass"]


def specialize(fn, args: dict) -> tuple[dict, dict, dict]:
    """(signature, constexprs, attrs) for ASTSource, as triton's JIT derives them from the launch arguments."""
    backend = make_backend(TARGET)
    missing = [p.name for p in fn.params if p.name not in args]
    if missing:
        raise ValueError(f"{fn.__name__}: no value for {missing}")
    signature, constexprs, attrs = {}, {}, {}
    for i, p in enumerate(fn.params):
        value = args[p.name]
        if p.is_constexpr:
            spec = ("constexpr", value)
        else:
            spec = native_specialize_impl(backend, value, p.is_const, not p.do_not_specialize,
                                          not p.do_not_specialize_on_alignment)
            if isinstance(p.annotation_type, str) and p.annotation_type:
                keep = p.annotation_type != "u1" and p.annotation_type[:2] not in ("fp", "bf")
                spec = (p.annotation_type, spec[1] if keep else None)
        signature[p.name] = spec[0]
        if spec[0] == "constexpr":
            constexprs[(i,)] = spec[1]
        elif isinstance(spec[1], str):
            attrs[(i,)] = backend.parse_attr(spec[1])
    return signature, constexprs, attrs


def _run(tool: str, *argv: str) -> str:
    """Run a CUDA tool from the Triton wheel; "ptxas" is the one Triton itself uses for sm_90."""
    exe = get_ptxas(TARGET.arch).path if tool == "ptxas" else str(BIN / tool)
    res = subprocess.run([exe, *argv], capture_output=True, text=True, check=False)
    if res.returncode:
        raise RuntimeError(f"{tool} {' '.join(argv)} failed ({res.returncode}): {res.stderr.strip()}")
    return res.stdout + res.stderr


def sass_opcodes(sass: str) -> list[str]:
    """Opcodes of an nvdisasm listing (one per instruction line, predicates stripped)."""
    ops = []
    for line in sass.splitlines():
        m = re.match(r"\s*/\*[0-9a-f]{4,}\*/\s+(?:@!?U?P\w+\s+)?([A-Z][A-Z0-9_.]*)", line)
        if m:
            ops.append(m.group(1))
    return ops


def analyse(compiled) -> dict:
    """Resource usage, spills and SASS instruction counts of one compiled kernel."""
    md = compiled.metadata
    with tempfile.TemporaryDirectory() as tmp:
        cubin = Path(tmp) / "k.cubin"
        cubin.write_bytes(compiled.asm["cubin"])
        ptx = Path(tmp) / "k.ptx"
        ptx.write_text(compiled.asm["ptx"])
        res = _run("cuobjdump", "-res-usage", str(cubin))
        fmad = [] if md.enable_fp_fusion else ["--fmad=false"]
        ptxas_log = _run("ptxas", "-lineinfo", "-v", "--regAllocOptLevel=2", *fmad, "--gpu-name=sm_90a", str(ptx),
                         "-o", str(Path(tmp) / "v.cubin"))
        sass = _run("nvdisasm", str(cubin))
    usage = dict(re.findall(r"\b(REG|STACK|SHARED|LOCAL):(\d+)", res))
    spills = re.search(r"(\d+) bytes spill stores, (\d+) bytes spill loads", ptxas_log)
    regs = int(usage.get("REG", 0))
    smem = max(int(md.shared), int(usage.get("SHARED", 0)))
    ops = sass_opcodes(sass)
    counts = {name: sum(1 for op in ops if pred(op)) for name, pred in SASS_CLASSES.items()}
    return {
        "regs": regs,
        "spill_st": int(spills.group(1)) if spills else 0,
        "spill_ld": int(spills.group(2)) if spills else 0,
        "stack": int(usage.get("STACK", 0)),
        "local": int(usage.get("LOCAL", 0)),
        "smem": smem,
        "warps/SM": warps_per_sm(regs, smem, md.num_warps),
        "sass": len(ops),
        **counts,
    }


def warps_per_sm(regs: int, smem: int, num_warps: int) -> int:
    """Resident warps per sm_90 SM allowed by registers (256-register warp granules), shared memory and limits."""
    regs_per_warp = -(-max(regs, 1) * 32 // 256) * 256
    blocks = min(REGS_PER_SM // (regs_per_warp * num_warps), MAX_WARPS_PER_SM // num_warps, MAX_BLOCKS_PER_SM)
    if smem:
        blocks = min(blocks, SMEM_PER_SM // (smem + 1024))  # 1 KB per block is reserved by the system
    return blocks * num_warps


def collect(modules: tuple[str, ...]) -> tuple[list[dict], list[str]]:
    """kernel_configs() of each module; notes for modules without the hook."""
    configs, notes = [], []
    for name in modules:
        mod = importlib.import_module(name)
        hook = getattr(mod, "kernel_configs", None)
        if hook is None:
            notes.append(f"{name}: no kernel_configs(); nothing compiled")
            continue
        for cfg in hook():
            if type(cfg["fn"]).__name__ != "JITFunction":
                raise RuntimeError(f"{name}.{cfg['kernel']}: not a compiled-mode JITFunction (was TRITON_INTERPRET "
                                   "set when the module was imported? run the report in a fresh process)")
            configs.append({**cfg, "module": name})
    return configs, notes


def config_name(cfg: dict, signature: dict, constexprs: dict, attrs: dict) -> str:
    """Input dtype, UPPER_CASE constexprs, non-stride ints specialised as ==1 or %16==0, warps and stages (the JSON
    lists every specialised argument)."""
    names = {(i,): p.name for i, p in enumerate(cfg["fn"].params)}
    consts = [f"{names[k]}={v}" for k, v in constexprs.items() if names[k].isupper()]
    ones = [names[k] for k in constexprs if not names[k].isupper() and not names[k].startswith("stride")]
    div16 = [names[k] for k, a in attrs.items()
             if a and not signature[names[k]].startswith("*") and not names[k].startswith("stride")]
    dtype = next((t[1:] for t in signature.values() if t.startswith("*")), "-")  # the first pointer's, the input's
    return " ".join([dtype, *consts, *([f"=1:{','.join(ones)}"] if ones else []),
                     *([f"%16:{','.join(div16)}"] if div16 else []), f"w{cfg['num_warps']}", f"s{cfg['num_stages']}"])


def build_report(modules: tuple[str, ...] = MODULES) -> dict:
    configs, notes = collect(modules)
    entries: dict[str, dict] = {}
    for cfg in configs:
        signature, constexprs, attrs = specialize(cfg["fn"], cfg["args"])
        key = repr((cfg["module"], cfg["fn"].__name__, signature, sorted(constexprs.items()), sorted(attrs.items()),
                    cfg["num_warps"], cfg["num_stages"]))
        if key in entries:
            entries[key]["labels"].append(cfg.get("label", ""))
            continue
        entry = {
            "module": cfg["module"], "kernel": cfg["kernel"], "function": cfg["fn"].__name__,
            "config": config_name(cfg, signature, constexprs, attrs), "num_warps": cfg["num_warps"],
            "num_stages": cfg["num_stages"], "labels": [cfg.get("label", "")],
            "max_spill_bytes": cfg.get("max_spill_bytes", 0), "min_warps_per_sm": cfg.get("min_warps_per_sm"),
            "expect_mma": bool(cfg.get("expect_mma", False)),
            "signature": signature, "constexprs": {cfg["fn"].params[k[0]].name: repr(v) for k, v in constexprs.items()},
            "divisible_by_16": [cfg["fn"].params[k[0]].name for k in attrs if attrs[k]],
            "equal_to_1": [cfg["fn"].params[k[0]].name for k in constexprs if not cfg["fn"].params[k[0]].is_constexpr],
        }
        t0 = time.perf_counter()
        try:
            src = ASTSource(cfg["fn"], signature, constexprs, attrs)
            compiled = triton.compile(src, target=TARGET,
                                      options={"num_warps": cfg["num_warps"], "num_stages": cfg["num_stages"]})
            entry.update(analyse(compiled))
            entry["problems"] = problems(entry)
        except Exception as exc:  # reported per config; the exit status says something failed
            entry["error"] = f"{type(exc).__name__}: {exc}"
            entry["problems"] = ["compile error"]
        entry["compile_s"] = round(time.perf_counter() - t0, 2)
        entries[key] = entry
    return {
        "target": "sm_90a (GPUTarget('cuda', 90, 32))",
        "triton": triton.__version__,
        "torch": torch.__version__,
        "tools": _run("ptxas", "--version").strip().splitlines()[-1],
        "git_commit": common.git_commit(),
        "timestamp": common.utc_timestamp(),
        "notes": notes,
        "configs": list(entries.values()),
    }


def problems(entry: dict) -> list[str]:
    out = []
    spill = entry["spill_st"] + entry["spill_ld"]
    if spill > entry["max_spill_bytes"]:
        out.append(f"spills {spill} B")
    if entry["min_warps_per_sm"] and entry["warps/SM"] < entry["min_warps_per_sm"]:
        out.append(f"occupancy {entry['warps/SM']} < {entry['min_warps_per_sm']} warps/SM")
    if entry["expect_mma"] and not (entry["HGMMA"] or entry["HMMA"]):
        out.append("no tensor-core MMA in SASS")
    return out


def markdown(report: dict) -> str:
    lines = ["| " + " | ".join(COLUMNS + ["shapes", "problems"]) + " |", "|" + "---|" * (len(COLUMNS) + 2)]
    for e in report["configs"]:
        cells = [str(e.get(c, "-")) for c in COLUMNS]
        shapes = f"{len(e['labels'])}: {e['labels'][0]}" + (", ..." if len(e["labels"]) > 1 else "")
        lines.append("| " + " | ".join(cells + [shapes, "; ".join(e["problems"]) or "ok"]) + " |")
    for e in report["configs"]:
        if "error" in e:
            lines.append(f"\n{e['kernel']} {e['config']}: {e['error']}")
    lines += [f"\nnote: {n}" for n in report["notes"]]
    return "\n".join(lines)


def write_csv(report: dict, path: Path) -> None:
    """Append one row per config (schema: op, config, metrics, target, versions, commit, timestamp)."""
    fields = ["op", "config", *COLUMNS[2:], "stack", "compile_s", "problems", "shapes", "target", "triton", "torch",
              "git_commit", "timestamp"]
    run_wide = {k: report[k] for k in ("target", "triton", "torch", "git_commit", "timestamp")}
    common.append_csv(path, [{**e, "op": e["kernel"], "problems": "; ".join(e["problems"]),
                              "shapes": " | ".join(e["labels"]), **run_wide} for e in report["configs"]], fields)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0],
                                 formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    ap.add_argument("--json", type=Path, help="write the full report here")
    ap.add_argument("--csv", type=Path,
                    help="append one row per config here (e.g. benchmarks/results/kernel_report.csv)")
    ap.add_argument("--module", action="append", help="kernel module(s) to report (default: all shipped)")
    args = ap.parse_args(argv)
    if str(common.REPO) not in sys.path:
        sys.path.insert(0, str(common.REPO))
    report = build_report(tuple(args.module) if args.module else MODULES)
    print(markdown(report))
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(report, indent=1, default=str))
    if args.csv:
        write_csv(report, args.csv)
    failed = [e for e in report["configs"] if e["problems"]]
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
