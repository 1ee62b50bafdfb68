"""benchmarks/kernel_report.py compiles every shipped kernel configuration for sm_90 on this (GPU-less) machine.

The report runs in a subprocess without TRITON_INTERPRET: compiling needs Triton's real JIT, and the report must
not clear the variable inside this test session, where the other kernel tests rely on the interpreter.
"""
import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("triton")
REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    out = tmp_path_factory.mktemp("kernel-report")
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    res = subprocess.run([sys.executable, str(REPO / "benchmarks" / "kernel_report.py"), "--json", str(out / "r.json"),
                          "--csv", str(out / "r.csv")], env=env, cwd=REPO, capture_output=True, text=True,
                         timeout=900, check=False)
    assert (out / "r.json").exists(), (f"report crashed (rc {res.returncode}):\n{res.stdout[-2000:]}\n"
                                       f"{res.stderr[-4000:]}")
    return {"rc": res.returncode, "stdout": res.stdout, "json": json.loads((out / "r.json").read_text()),
            "csv": list(csv.DictReader((out / "r.csv").open()))}


def _configs(report, module_suffix):
    return [e for e in report["json"]["configs"] if e["module"].endswith(module_suffix)]


def test_every_config_compiles_and_meets_its_expectations(report):
    configs = report["json"]["configs"]
    assert configs, "no kernel configurations were collected"
    errors = [f"{e['kernel']} {e['config']}: {e['error']}" for e in configs if "error" in e]
    assert not errors, "\n".join(errors)
    problems = [f"{e['kernel']} {e['config']}: {e['problems']}" for e in configs if e["problems"]]
    assert not problems, "\n".join(problems)
    assert report["rc"] == 0
    assert "| group_norm_stats |" in report["stdout"]  # the markdown table went to stdout
    assert len(report["csv"]) == len(configs)
    assert report["json"]["target"].startswith("sm_90a")


def test_group_norm_configs_do_not_spill_and_vectorise(report):
    gn = _configs(report, "group_norm")
    assert {e["kernel"] for e in gn} == {"group_norm_stats", "group_norm_apply"}
    for e in gn:
        assert e["spill_st"] == e["spill_ld"] == e["local"] == 0, e
        assert e["warps/SM"] >= 32, e
        assert e["HGMMA"] == e["HMMA"] == 0
    # tiles of >= 8 contiguous fp16 elements per thread (>= 256 positions per channel row) load 16 bytes at a time
    wide = [e for e in gn if int(e["constexprs"]["BLOCK_HW"]) * int(e["constexprs"]["BLOCK_C"]) >= 256 * e["num_warps"]]
    assert wide and all(e["LDG.128"] > 0 for e in wide), [(e["config"], e["LDG.128"]) for e in wide]
    assert all(e["MUFU.EX2"] > 0 for e in gn if e["constexprs"].get("SILU") == "True")


def test_attention_configs_use_tensor_cores(report):
    att = _configs(report, "attention")
    if not att:
        pytest.skip("; ".join(n for n in report["json"]["notes"] if "attention" in n) or "no attention configs")
    for e in att:
        assert e["HGMMA"] + e["HMMA"] > 0, f"{e['config']}: no tensor-core MMA in the SASS"
        assert e["spill_st"] == e["spill_ld"] == 0, f"{e['config']}: spills"
