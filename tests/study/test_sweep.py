"""Sweeps: two axes × two seeds, single process and under torchrun with 2 processes, resume, grids, metrics."""
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image, ImageDraw

from inpaintlab.study import load_spec, sweep
from inpaintlab.study.metrics import compute_metrics, edge_band


@pytest.fixture(scope="module")
def spec_file(tiny_checkpoint, tmp_path_factory):
    folder = tmp_path_factory.mktemp("sweep-spec")
    rng = np.random.default_rng(1)
    Image.fromarray(rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)).save(folder / "image.png")
    mask = Image.new("L", (32, 32))
    ImageDraw.Draw(mask).rectangle((8, 8, 23, 23), fill=255)
    mask.save(folder / "mask.png")
    spec = {
        "model": str(tiny_checkpoint), "image": "image.png", "mask": "mask.png", "kernels": "torch",
        "base": {"prompt": "a ball", "steps": 2, "mask_blur": 1},
        "x": {"masked_content": ["original", "latent_nothing"]},
        "y": {"denoising_strength": [0.5, 1.0]},
        "seeds": [3, 4],
        "intermediates": True,
    }
    (folder / "spec.json").write_text(json.dumps(spec))
    return folder / "spec.json"


def _rows(out: Path) -> list[dict]:
    return [json.loads(line) for line in (out / "results.jsonl").read_text().splitlines()]


def test_single_process_sweep_rows_grids_and_resume(spec_file, tmp_path):
    out = tmp_path / "single"
    rows = sweep(spec_file, out)
    assert len(rows) == 8 and rows == _rows(out)
    assert [r["index"] for r in rows] == list(range(8))
    assert {(r["seed"], r["x"]["masked_content"], r["y"]["denoising_strength"]) for r in rows} == {
        (s, m, d) for s in (3, 4) for m in ("original", "latent_nothing") for d in (0.5, 1.0)}
    for row in rows:
        assert row["metrics"]["change_outside"] == 0.0  # whole-picture overlay: the regression alarm stays silent
        assert row["metrics"]["change_in_mask"] > 0
        assert (out / row["image"]).exists() and len(row["intermediates"]["steps"]) >= 1
    for seed in (3, 4):
        grid = Image.open(out / f"grid-seed{seed}.png")
        assert grid.width >= 2 * 32 and grid.height >= 2 * 32
    # Rerunning computes nothing new: every row is found by its key.
    stamps = {p: p.stat().st_mtime_ns for p in (out / "cells").glob("*.json")}
    assert sweep(spec_file, out) == rows
    assert stamps == {p: p.stat().st_mtime_ns for p in (out / "cells").glob("*.json")}


def test_partial_run_resumes(spec_file, tmp_path):
    out = tmp_path / "partial"
    assert sweep(spec_file, out, limit=3) is None  # stopped early: no merge yet
    assert len(list((out / "cells").glob("*.json"))) == 3 and not (out / "results.jsonl").exists()
    rows = sweep(spec_file, out)
    reference = sweep(spec_file, tmp_path / "clean")
    assert [(r["key"], r["metrics"]) for r in rows] == [(r["key"], r["metrics"]) for r in reference]


def test_torchrun_two_processes_match_single_process(spec_file, tmp_path):
    # torchrun gives each process one intra-op thread; CPU float reductions depend on the thread count, so the
    # single-process reference runs with one thread too.
    torchrun = shutil.which("torchrun") or str(Path(sys.executable).with_name("torchrun"))
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    env["OMP_NUM_THREADS"] = "1"
    command = ["-m", "inpaintlab.inpaint", "sweep", str(spec_file), "--out"]
    for runner, out in (([torchrun, "--standalone", "--nproc_per_node=2"], tmp_path / "dist"),
                        ([sys.executable], tmp_path / "single")):
        result = subprocess.run(runner + command + [str(out)], env=env, capture_output=True, text=True, timeout=600)
        assert result.returncode == 0, result.stderr[-3000:]
    assert _rows(tmp_path / "dist") == _rows(tmp_path / "single")
    assert len(list((tmp_path / "dist").glob("grid-seed*.png"))) == 2


def test_killed_run_loses_only_cells_in_flight(spec_file, tmp_path):
    out = tmp_path / "killed"
    code = ("import sys, os; from inpaintlab.study import sweep; sweep(sys.argv[1], sys.argv[2], limit=2); "
            "os._exit(9)")  # dies abruptly after two cells, as a killed job would
    subprocess.run([sys.executable, "-c", code, str(spec_file), str(out)], timeout=600)
    done = list((out / "cells").glob("*.json"))
    assert len(done) == 2
    for path in done:
        json.loads(path.read_text())  # complete rows only
    assert not list(out.rglob("*.tmp"))
    assert len(sweep(spec_file, out)) == 8


def test_spec_errors(tmp_path, spec_file):
    raw = json.loads(spec_file.read_text())
    for change, message in (({"x": {"colour": [1]}}, "unknown setting"), ({"y": None}, "'y' is required"),
                            ({"seeds": [-1]}, "seeds"), ({"bogus": 1}, "unknown keys"),
                            ({"z": {"masked_content": ["fill"]}}, "different settings")):
        with pytest.raises(ValueError, match=message):
            load_spec({**raw, **change}, root=spec_file.parent)
    toml = tmp_path / "s.toml"
    toml.write_text('model = "m.safetensors"\nimage = "i.png"\nmask = "k.png"\nseeds = [1]\n'
                    '[x]\nsteps = [1, 2]\n[y]\ncfg_scale = [3.0]\n')
    spec = load_spec(toml)
    assert spec.x == ("steps", [1, 2]) and spec.model == (tmp_path / "m.safetensors").resolve()


def test_noise_settings_as_axes(spec_file, tmp_path):
    raw = json.loads(spec_file.read_text())
    raw.update({"x": {"rng_source": ["CPU", "NV"]}, "y": {"subseed_strength": [0.0, 1.0]}, "seeds": [3],
                "intermediates": False})
    raw["base"] = {**raw["base"], "steps": 1, "subseed": 4}
    rows = {(r["x"]["rng_source"], r["y"]["subseed_strength"]): r for r in sweep(load_spec(raw, spec_file.parent),
                                                                               tmp_path / "noise")}
    assert "RNG: NV" in rows["NV", 0.0]["infotext"] and "Variation seed: 4," in rows["CPU", 1.0]["infotext"]
    images = {key: Image.open(tmp_path / "noise" / row["image"]).tobytes() for key, row in rows.items()}
    assert len(set(images.values())) == 4


def test_metrics_formulas():
    a = Image.fromarray(np.full((16, 16, 3), 100, np.uint8))
    b_arr = np.full((16, 16, 3), 100, np.uint8)
    b_arr[4:12, 4:12] = 151
    mask = Image.new("L", (16, 16))
    ImageDraw.Draw(mask).rectangle((4, 4, 11, 11), fill=255)
    metrics = compute_metrics(a, Image.fromarray(b_arr), mask)
    assert metrics["change_in_mask"] == pytest.approx(51 / 255)
    assert metrics["change_outside"] == 0.0
    assert metrics["seam"] > 0
    band = edge_band(mask, band=1)
    assert band[4, 4] and band[3, 3] and not band[8, 8] and not band[0, 0]


@pytest.mark.parametrize("name", ["masked_content_vs_denoising.json", "mask_blur_vs_mask_mode.json",
                                  "inpaint_area_vs_padding.toml", "controlnet_weight_vs_guidance_end.json",
                                  "rng_source_vs_variation.json"])
def test_example_specs_are_valid(name):
    examples = Path(__file__).resolve().parents[2] / "examples"
    spec = load_spec(examples / name)
    assert len(spec.cells()) >= 6 and spec.model.name == "v1-5-pruned-emaonly.safetensors"


def test_seam_score_against_a_pixel_loop():
    rng = np.random.default_rng(5)
    a = rng.integers(0, 256, (12, 14, 3)).astype(np.uint8)
    b = a.copy()
    b[3:9, 4:10] = rng.integers(0, 256, (6, 6, 3))
    mask = Image.new("L", (14, 12))
    ImageDraw.Draw(mask).rectangle((4, 3, 9, 8), fill=255)
    band = edge_band(mask, band=2)

    def gradient(img, y, x):  # forward differences of the luma, 0 past the last row/column
        luma = img.astype(np.float64) @ np.array([0.299, 0.587, 0.114]) / 255.0
        gx = luma[y, x + 1] - luma[y, x] if x + 1 < img.shape[1] else 0.0
        gy = luma[y + 1, x] - luma[y, x] if y + 1 < img.shape[0] else 0.0
        return (gx * gx + gy * gy) ** 0.5

    values = [abs(gradient(b, y, x) - gradient(a, y, x)) for y in range(12) for x in range(14) if band[y, x]]
    metrics = compute_metrics(Image.fromarray(a), Image.fromarray(b), mask, band=2)
    assert metrics["seam"] == pytest.approx(sum(values) / len(values), rel=1e-12)
    inside = np.abs(a.astype(float) - b.astype(float)).mean(axis=2)[3:9, 4:10].mean() / 255.0
    assert metrics["change_in_mask"] == pytest.approx(inside, rel=1e-12)


def test_latent_preview_uses_a1111_cheap_coefficients():
    from inpaintlab.study import latent_preview

    coefficients = [[0.298, 0.207, 0.208], [0.187, 0.286, 0.173], [-0.158, 0.189, 0.264], [-0.184, -0.271, -0.473]]
    latent = torch.randn(1, 4, 3, 5, generator=torch.Generator().manual_seed(0))
    image = np.asarray(latent_preview(latent))
    assert image.shape == (3, 5, 3)
    for y, x in ((0, 0), (2, 4), (1, 3)):
        v = latent[0, :, y, x].double().numpy()
        rgb = np.clip((v @ np.array(coefficients) + 1.0) / 2.0, 0.0, 1.0) * 255.0
        assert np.abs(image[y, x].astype(float) - rgb).max() <= 1.0  # uint8 truncation of a float32 computation


def test_grouped_axis_compares_blends(spec_file, tmp_path):
    raw = json.loads(spec_file.read_text())
    raw.update(x={"blending": [{"label": "binary"}, {"label": "soft", "soft_inpainting": True},
                               {"label": "differential", "differential_diffusion": True}]},
               y={"mask_blur": [2]}, seeds=[3], intermediates=False)
    raw["base"] = {**raw["base"], "mask_blur": 0}
    rows = sweep(load_spec(raw, root=spec_file.parent), tmp_path / "blend")
    assert [r["x"]["blending"]["label"] for r in rows] == ["binary", "soft", "differential"]
    assert rows[1]["settings"]["soft_inpainting"] is True and "label" not in rows[1]["settings"]
    assert "Soft inpainting enabled: True" in rows[1]["infotext"]
    assert "Differential diffusion: True" in rows[2]["infotext"]
    assert all(r["metrics"]["change_outside"] == 0.0 for r in rows)  # every composite keeps the untouched pixels
    assert len({r["key"] for r in rows}) == 3
    for group, message in (([{"colour": 1}], "unknown settings"), ([{"mask_blur": 1}], "different settings")):
        with pytest.raises(ValueError, match=message):
            load_spec({**raw, "x": {"g": group}}, root=spec_file.parent)


def test_blend_example_spec_is_valid():
    spec = load_spec(Path(__file__).resolve().parents[2] / "examples" / "blend_vs_mask_blur.json")
    assert len(spec.cells()) == 12 and spec.cells()[1].settings(spec.base)["soft_inpainting"] is True


def test_mask_expansion_axis(spec_file, tmp_path):
    """A `mask_expand` axis grows the mask (3x3 dilation N times) before inpainting: the repainted area grows."""
    raw = json.loads(spec_file.read_text())
    raw.update({"x": {"mask_expand": [0, 3]}, "y": {"masked_content": ["fill"]}, "seeds": [3], "intermediates": False})
    raw["base"] = {**raw["base"], "steps": 1, "mask_blur": 0}
    rows = {r["x"]["mask_expand"]: r for r in sweep(load_spec(raw, spec_file.parent), tmp_path / "expand")}
    source = np.asarray(Image.open(spec_file.parent / "image.png"))
    changed = {n: (np.asarray(Image.open(tmp_path / "expand" / r["image"])) != source).any(axis=2)
               for n, r in rows.items()}
    assert not changed[0][:7].any() and changed[3][5:8, 10:20].any()  # 16x16 square at 8..23 grown to 5..26
    with pytest.raises(ValueError, match="pixel counts from 0 to 100"):
        load_spec({**raw, "x": {"mask_expand": [1.5]}}, spec_file.parent)
