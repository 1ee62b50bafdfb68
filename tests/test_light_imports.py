"""`inpaintlab --version`, `--help`, every subcommand's `--help`, `info PNG` and `info --check DIR` import neither torch
nor numpy (about 2 s before; PIL reads the images), checked in a fresh interpreter; `import inpaintlab` and the whole
settings registry need not even PIL. The lazy package namespaces (`inpaintlab._lazy`) keep every public name."""
from __future__ import annotations

import importlib
import json
import struct
import subprocess
import sys
from pathlib import Path

import pytest
from PIL import Image

import inpaintlab
from inpaintlab import settings as registry
from inpaintlab.infotext import save_png

ROOT = Path(__file__).resolve().parents[1]
HEAVY = ("torch", "numpy", "cv2", "safetensors", "scipy")
BASE = "Steps: 20, Sampler: Euler a, CFG scale: 7, Seed: 5, Size: 512x512"
PICTURES = {
    # no RNG key: A1111's "GPU" noise, whose replay depends on whether CUDA is here
    "a1111.png": "a door\nNegative prompt: blurry\nSteps: 20, Sampler: DPM++ 2M, Schedule type: Karras, CFG scale: 7, "
                 "Seed: 1, Size: 512x512, Model hash: 6ce0161689, Model: v1-5, Denoising strength: 0.75, Mask blur: 4, "
                 "Version: v1.10.1",
    "controlnet.png": f"p\n{BASE}, ControlNet 0: \"Module: canny, Model: control_v11p_sd15_canny [d14c016b], "
                      "Weight: 0.8, Resize Mode: Crop and Resize, Processor Res: 512, Threshold A: 100.0, Threshold B: "
                      "200.0, Guidance Start: 0.0, Guidance End: 1.0, Pixel Perfect: False, Control Mode: Balanced\"",
    "openpose.png": f"p\n{BASE}, ControlNet 0: \"Module: openpose_full, Model: control_v11p_sd15_openpose [cab727d4]\"",
    # the preprocessors whose maps need numpy and cv2 (shuffle, colour grid) or the VAE (tile_colorfix): read only
    "colorfix.png": f"p\n{BASE}, ControlNet 0: \"Module: tile_colorfix+sharp, Model: control_v11f1e_sd15_tile "
                    "[a371b31b], Weight: 0.9, Resize Mode: Crop and Resize, Processor Res: 512, Threshold A: 12.0, "
                    "Threshold B: 1.5, Guidance Start: 0.0, Guidance End: 1.0, Pixel Perfect: False, Control Mode: "
                    "My prompt is more important\"",
    "shuffle.png": f"p\n{BASE}, ControlNet 0: \"Module: shuffle, Model: control_v11e_sd15_shuffle [526bfdae], "
                   "Weight: 1.0, Processor Res: 640, Threshold A: 0.5, Threshold B: 0.5, Pixel Perfect: True\"",
    "color_grid.png": f"p\n{BASE}, ControlNet 0: \"Module: t2ia_color_grid, Model: t2iadapter_color [743b5c62], "
                      "Processor Res: 768\"",
    "adetailer.png": f"p\n{BASE}, ADetailer model: face_yolov8n.pt, ADetailer confidence: 0.3, "
                     "ADetailer model 2nd: hand_yolov8n.pt, ADetailer version: 25.3.0",
    "hires.png": f"p\n{BASE}, Denoising strength: 0.7, Hires upscale: 2, Hires resize: 1024x768, Hires upscaler: Latent",
    "guidance.png": f"p\n{BASE}, FreeU Stages: \"[{{\\\"backbone_factor\\\": 1.1}}]\", FreeU Schedule: \"0.0, 1.0, 0.0\", "
                    "Dynamic thresholding enabled: True, Mimic scale: 5, PAG Scale: 3, SEG Blur Sigma: 11, "
                    "CFG Rescale: 0.5, NGMS: 2, Token merging ratio: 0.5",
    "refiner.png": f"p\n{BASE}, Refiner: sd_xl_refiner_1.0 [7440042bbd], Refiner switch at: 0.8",
    "soft.png": f"p\n{BASE}, Denoising strength: 0.8, Mask blur: 16, Soft inpainting enabled: True, "
                "Soft inpainting schedule bias: 1.5, Noise multiplier: 0.9, Extra noise: 0.1",
    "lora_grid.png": f"p <lora:detail:0.5>\n{BASE}, Lora hashes: \"detail: 1a2b3c4d5e6f\", X Type: CFG scale, "
                     "X Values: \"5, 7\"",
    "forge.png": f"p\n{BASE.replace('Euler a', 'Euler A Turbo')}, Distilled CFG Scale: 3.5, Version: f2.0.1v1.10.1",
    "prompt_only.png": "only a prompt",
}
# Each command, run one after the other by `main` in one fresh interpreter; the heavy modules are checked after each.
SCRIPT = """
import contextlib, io, json, sys
from inpaintlab.cli import main
from inpaintlab import settings as registry
from inpaintlab.check import describe
from inpaintlab.infotext import format_value
from inpaintlab.replay import read_replay

heavy, found = json.loads(sys.argv[1]), {}
def loaded():
    return [m for m in heavy if m in sys.modules]
for argv in json.loads(sys.argv[2]):
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
        try:
            status = main(argv)
        except SystemExit as exit:
            status = exit.code
    found[" ".join(argv)] = [status, loaded()]
# Every row's example value read back and described, as `info` does (the parse and check of every row).
base = "p\\nSteps: 20, Sampler: Euler a, CFG scale: 7, Seed: 5, Size: 512x512"
for name, row in registry.SETTINGS.items():
    if row.infotext and row.example is not registry.MISSING and row.parse is None and row.kind is not tuple:
        text = f"{base}, {row.infotext}: {format_value(row.example)}"
        assert not read_replay(text).problems, name
        describe(text, "x.png")
        found["row " + name] = [0, loaded()]
print(json.dumps(found))
"""


def _subcommands() -> list[str]:
    from inpaintlab.cli import build_parser

    return list(build_parser()._subparsers._group_actions[0].choices)


def _exif(text: str) -> bytes:
    comment = b"UNICODE\0" + text.encode("utf-16-be")
    ifd0 = struct.pack(">H", 1) + struct.pack(">HHII", 0x8769, 4, 1, 26) + struct.pack(">I", 0)
    exif_ifd = struct.pack(">H", 1) + struct.pack(">HHII", 0x9286, 7, len(comment), 44) + struct.pack(">I", 0)
    return b"Exif\0\0" + b"MM\0\x2a" + struct.pack(">I", 8) + ifd0 + exif_ifd + comment


def _run(code: str, *args: str) -> str:
    done = subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert done.returncode == 0, done.stderr[-3000:]
    return done.stdout


def test_info_version_and_help_import_no_torch(tmp_path):
    folder = tmp_path / "pictures"
    folder.mkdir()
    for name, text in PICTURES.items():
        save_png(Image.new("RGB", (16, 16), (40, 80, 120)), folder / name, text)
    Image.new("RGB", (16, 16)).save(folder / "exif.jpg", exif=_exif(f"in a jpeg\n{BASE}"))
    commands = [["--version"], ["--help"], *([c, "--help"] for c in _subcommands()),
                *(["info", str(folder / name)] for name in [*PICTURES, "exif.jpg"]),
                ["info", "--raw", str(folder / "a1111.png")], ["info", "--check", str(folder)]]
    found = json.loads(_run(SCRIPT, json.dumps(HEAVY), json.dumps(commands)).splitlines()[-1])
    assert len(found) > len(commands) + 40  # and the rows' examples
    statuses = {cmd: status for cmd, (status, _) in found.items()}
    assert all(status == 0 for cmd, status in statuses.items() if not cmd.endswith("prompt_only.png")), statuses
    heavy = {cmd: modules for cmd, (_, modules) in found.items() if modules}
    assert not heavy, f"imported {heavy}"


def test_import_inpaintlab_and_the_registry_need_no_pil():
    code = ("import sys, inpaintlab; from inpaintlab import settings; import " + ", ".join(registry.ROWS_MODULES)
            + "; print(len(settings.SETTINGS), [m for m in ('torch', 'numpy', 'PIL', 'cv2') if m in sys.modules])")
    count, modules = _run(code).split(" ", 1)
    assert int(count) == len(registry.SETTINGS) and modules.strip() == "[]"


def test_version_from_the_command_line():
    done = subprocess.run([sys.executable, "-m", "inpaintlab", "--version"], capture_output=True, text=True, cwd=ROOT,
                          timeout=60)
    assert done.returncode == 0 and done.stdout.strip() == f"inpaintlab {inpaintlab.__version__}"


LAZY = ("inpaintlab", "inpaintlab.pipeline", "inpaintlab.techniques", "inpaintlab.adetailer", "inpaintlab.guidance",
        "inpaintlab.controlnet", "inpaintlab.segment", "inpaintlab.upscalers", "inpaintlab.detect", "inpaintlab.lama",
        "inpaintlab.scripts", "inpaintlab.study")


@pytest.mark.parametrize("name", LAZY)
def test_lazy_namespaces_keep_every_public_name(name):
    package = importlib.import_module(name)
    assert set(package.__all__) <= set(dir(package))
    for public in package.__all__:
        value = getattr(package, public)
        source = package._lazy_exports.get(public)
        if source is not None:  # the very object its module defines
            assert value is getattr(importlib.import_module(source, name), public), (name, public)
    star: dict = {}
    exec(f"from {name} import *", star)
    assert set(package.__all__) <= set(star)
    with pytest.raises(AttributeError, match="no attribute 'not_a_name'"):
        package.not_a_name  # noqa: B018


def test_public_names_and_submodules_right_after_import():
    """In a fresh interpreter: `inpaintlab.infotext` without importing it, `from inpaintlab import Pipeline, load,
    errors`, and a function named like its submodule stays the function once the submodule is imported."""
    code = """
import importlib, inpaintlab
print(inpaintlab.infotext.__name__, inpaintlab.errors.__name__)
from inpaintlab import Pipeline, Result, Technique, load, errors, __version__
print(Pipeline.__name__, Result.__name__, Technique.__name__, load.__module__, errors.__name__)
importlib.import_module("inpaintlab.segment.load")
import inpaintlab.segment
from inpaintlab.segment import load as sam_load
print(callable(sam_load) and sam_load.__module__, inpaintlab.segment.load is sam_load)
import inpaintlab.guidance.cfg_rescale
from inpaintlab.guidance import cfg_rescale
print(cfg_rescale.__module__)
"""
    assert _run(code).split() == ["inpaintlab.infotext", "inpaintlab.errors", "Pipeline", "Result", "Technique",
                                  "inpaintlab.pipeline.load", "inpaintlab.errors", "inpaintlab.segment.load", "True",
                                  "inpaintlab.guidance.cfg_rescale"]


@pytest.mark.parametrize("first", ["inpaintlab.techniques.lora", "inpaintlab.guidance.cfg_techniques"])
def test_a_technique_module_may_be_imported_first(first):
    """No import cycle through the lazy namespaces (each technique imports the pipeline, which runs them all)."""
    assert _run(f"import {first}, inpaintlab.techniques.builtins as b; print(len(b.BUILTIN))").strip() == "18"
