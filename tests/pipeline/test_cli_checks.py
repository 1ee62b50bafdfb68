"""The command line checks everything it can before loading a model, and fails with one line."""
import subprocess
import sys
from pathlib import Path

import pytest
from PIL import Image, ImageDraw

import inpaintlab.cli as cli  # noqa: F401
import inpaintlab.frontend as frontend
from inpaintlab.cli import main
from inpaintlab.infotext import read_png_infotext, save_png

ROOT = Path(__file__).resolve().parents[2]
A1111_PNG_TEXT = (
    "a cat <hypernet:catstyle:0.8>\nSteps: 2, Sampler: Euler, Schedule type: Automatic, CFG scale: 7, Seed: 5, "
    "Size: 32x32, Variation seed: 99, Variation seed strength: 0.3, Denoising strength: 0.75, ENSD: 31337, "
    "Eta: 0.5, Face restoration: CodeFormer, RNG: CPU, Version: v1.10.1"
)


@pytest.fixture
def no_load(monkeypatch):
    """Fail the test if the command gets as far as loading a model."""
    def refuse(*args, **kwargs):
        raise AssertionError("a model was loaded before the inputs were checked")

    monkeypatch.setattr(frontend, "_load", refuse)


@pytest.fixture
def inputs(tmp_path):
    Image.new("RGB", (32, 32), (90, 120, 200)).save(tmp_path / "image.png")
    mask = Image.new("L", (32, 32))
    ImageDraw.Draw(mask).rectangle((8, 8, 24, 24), fill=255)
    mask.save(tmp_path / "mask.png")
    return tmp_path


def _inpaint(model, inputs, *extra):
    return ["inpaint", "--model", str(model), "--image", str(inputs / "image.png"), "--mask", str(inputs / "mask.png"),
            "--prompt", "x", "--kernels", "torch", "--no-progress", *extra]


def test_output_folder_is_checked_before_the_model_loads(tiny_checkpoint, inputs, no_load, capsys):
    (inputs / "in128.png").write_bytes(b"a file, not a folder")
    code = main(["txt2img", "--model", str(tiny_checkpoint), "--prompt", "cat", "--out", str(inputs / "in128.png" / "sub"),
                 "--kernels", "torch"])
    err = capsys.readouterr().err
    assert code == 2 and "in128.png" in err and "cannot write there" in err and len(err.strip().splitlines()) == 1


@pytest.mark.parametrize("flags, message", [
    (["--sampler", "Nope"], "unknown sampler 'Nope'"),
    (["--masked-content", "latent"], "unknown --masked-content 'latent'"),
    (["--steps", "0"], "steps must be >= 1"),
    (["--inpainting-mask-weight", "2"], "--inpainting-mask-weight must be in [0, 1]"),
    (["--device", "gpu0"], "--device 'gpu0': not a torch device"),
    (["--mask-alpha", "150"], "--mask-alpha must be in [0, 100]"),
])
def test_bad_settings_fail_before_loading(tiny_checkpoint, inputs, no_load, capsys, flags, message):
    assert main(_inpaint(tiny_checkpoint, inputs, "--out", str(inputs / "out"), *flags)) == 2
    err = capsys.readouterr().err
    assert message in err and len(err.strip().splitlines()) == 1
    assert not (inputs / "out").exists()


def test_missing_image_is_named_before_loading(tiny_checkpoint, inputs, no_load, capsys):
    args = _inpaint(tiny_checkpoint, inputs, "--out", str(inputs / "out"))
    args[args.index("--image") + 1] = str(inputs / "nope.png")
    assert main(args) == 2 and "nope.png" in capsys.readouterr().err


@pytest.mark.skipif(__import__("torch").cuda.is_available(), reason="checks the message on a machine without CUDA")
def test_cuda_and_triton_without_a_gpu_are_one_line_errors(tiny_checkpoint, inputs, no_load, capsys, monkeypatch):
    assert main(_inpaint(tiny_checkpoint, inputs, "--out", str(inputs / "o"), "--device", "cuda")) == 2
    assert "CUDA is not available" in capsys.readouterr().err
    monkeypatch.setenv("TRITON_INTERPRET", "0")
    args = _inpaint(tiny_checkpoint, inputs, "--out", str(inputs / "o"), "--device", "cpu")
    args[args.index("--kernels") + 1] = "triton"
    assert main(args) == 2
    err = capsys.readouterr().err
    assert "--kernels triton" in err and len(err.strip().splitlines()) == 1


def test_ctrl_c_exits_130_with_one_line(tiny_checkpoint, inputs, monkeypatch, capsys):
    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(frontend, "_load", interrupted)
    assert main(_inpaint(tiny_checkpoint, inputs, "--out", str(inputs / "out"))) == 130
    assert capsys.readouterr().err.strip() == "inpaintlab: interrupted"
    assert not (inputs / "out").exists()  # created by this run, left empty: removed


def test_from_png_names_unapplied_keys_and_strict_refuses(tiny_checkpoint, inputs, capsys):
    png = save_png(Image.new("RGB", (32, 32)), inputs / "a1111.png", A1111_PNG_TEXT)
    common = _inpaint(tiny_checkpoint, inputs, "--from-png", str(png))
    assert main([*common, "--out", str(inputs / "a")]) == 0
    err = capsys.readouterr().err
    warnings = [line for line in err.splitlines() if "inpaintlab: warning:" in line]
    assert len(warnings) == 1
    for key in ("Face restoration", "<hypernet:catstyle:0.8>"):
        assert key in warnings[0]
    assert "Variation seed" not in warnings[0] and "ENSD" not in warnings[0] and "Eta" not in warnings[0]
    assert main([*common, "--strict", "--out", str(inputs / "b")]) == 2
    assert "Face restoration" in capsys.readouterr().err and not (inputs / "b").exists()


def test_a1111_labels_on_the_command_line(tiny_checkpoint, inputs):
    assert main(_inpaint(tiny_checkpoint, inputs, "--out", str(inputs / "o"), "--steps", "1", "--seed", "3",
                         "--masked-content", "latent noise", "--inpaint-area", "Only masked",
                         "--mask-mode", "Inpaint not masked")) == 0
    text = read_png_infotext(inputs / "o" / "00000-3.png")
    assert "Masked content: latent noise" in text and "Inpaint area: Only masked" in text
    assert "Mask mode: Inpaint not masked" in text


def test_tiny_writes_loadable_files_of_every_family(tmp_path, capsys):
    import inpaintlab
    from inpaintlab.controlnet import load_controlnet

    assert main(["tiny", "--out", str(tmp_path)]) == 0
    printed = capsys.readouterr().out.split()
    names = ["tiny.safetensors", "tiny-inpainting.safetensors", "tiny-vae.safetensors", "tiny-controlnet.safetensors",
             "tiny-sd2.safetensors", "tiny-sd2-v.safetensors", "tiny-sdxl.safetensors",
             "tiny-sdxl-inpainting.safetensors", "tiny-sam2.safetensors", "tiny-lama.safetensors",
             "tiny-sam.safetensors", "lora/tiny-detail.safetensors", "lora/tiny-xl-detail.safetensors",
             "tiny-yolov8n.safetensors", "tiny-sdxl-refiner.safetensors"]
    assert printed == [str(tmp_path / n) for n in names]
    from inpaintlab.segment import load as load_segment

    assert load_segment(tmp_path / names[10]).family == "sam"
    from safetensors.torch import load_file

    from inpaintlab.lama import load_lama
    from inpaintlab.segment.sam2 import build_sam2

    sam2 = load_file(tmp_path / names[8])
    model = build_sam2(sam2)
    assert (model.family, model.size) == ("sam2", "tiny")
    assert not [k for k, v in sam2.items() if bool((v == 0).all() or (v == 1).all())]  # every tensor re-drawn
    assert load_lama(tmp_path / names[9]).config.n_blocks == 2
    assert not inpaintlab.load(tmp_path / names[0], kernels="torch").config.is_inpainting
    assert inpaintlab.load(tmp_path / names[1], tmp_path / names[2], kernels="torch").config.is_inpainting
    assert load_controlnet(tmp_path / names[3], kernels="torch").config.num_outputs == 5  # the tiny UNet's skips + 1
    for name, family, prediction, inpainting in (("sd2", "sd2", "eps", False), ("sd2-v", "sd2", "v", False),
                                                 ("sdxl", "sdxl", "eps", False),
                                                 ("sdxl-inpainting", "sdxl", "eps", True),
                                                 ("sdxl-refiner", "sdxl_refiner", "eps", False)):
        config = inpaintlab.load(tmp_path / f"tiny-{name}.safetensors", kernels="torch").config
        assert (config.family, config.prediction, config.is_inpainting) == (family, prediction, inpainting)


def test_python_dash_m_inpaintlab_runs_without_warnings():
    done = subprocess.run([sys.executable, "-W", "error", "-m", "inpaintlab", "--version"], cwd=ROOT,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0 and done.stdout.startswith("inpaintlab ") and done.stderr == ""


def test_verbose_after_the_subcommand_and_no_flood(tiny_checkpoint, inputs, caplog):
    import logging

    from inpaintlab.kernels.dispatch import log_once

    log_once.cache_clear()
    args = _inpaint(tiny_checkpoint, inputs, "--out", str(inputs / "o"), "--steps", "2", "-v")
    args[args.index("--kernels") + 1] = "auto"
    try:
        with caplog.at_level(logging.DEBUG):
            assert main(args) == 0
            assert logging.getLogger("inpaintlab").getEffectiveLevel() == logging.DEBUG
            assert logging.getLogger("PIL").level in (logging.NOTSET, logging.WARNING)
    finally:
        logging.getLogger("inpaintlab").setLevel(logging.NOTSET)
    messages = [r.getMessage() for r in caplog.records if r.name.startswith("inpaintlab")]
    assert sum("auto -> torch" in m for m in messages) == 1
    assert not [r for r in caplog.records if r.name.startswith("PIL") and r.levelno < logging.WARNING]


def test_sweep_checks_every_cell_first_and_shows_progress(tiny_checkpoint, inputs, monkeypatch, capsys):
    import json

    import inpaintlab.pipeline

    spec = {"model": str(tiny_checkpoint), "image": str(inputs / "image.png"), "mask": str(inputs / "mask.png"),
            "base": {"prompt": "x", "steps": 1}, "x": {"masked_content": ["fill", "latent noise"]},
            "y": {"steps": [1, 0]}, "seeds": [1], "kernels": "torch"}
    (inputs / "bad.json").write_text(json.dumps(spec))
    real_load = inpaintlab.pipeline.load
    monkeypatch.setattr(inpaintlab.pipeline, "load", lambda *a, **k: pytest.fail("loaded before the spec was checked"))
    assert main(["sweep", str(inputs / "bad.json"), "--out", str(inputs / "s")]) == 2
    assert "axis 'y': steps must be >= 1" in capsys.readouterr().err
    monkeypatch.setattr(inpaintlab.pipeline, "load", real_load)
    spec["y"] = {"steps": [1]}
    (inputs / "good.json").write_text(json.dumps(spec))
    assert main(["sweep", str(inputs / "good.json"), "--out", str(inputs / "s")]) == 0
    err = capsys.readouterr().err
    assert "sweep: 100%" in err and "2/2" in err


def test_demo_passes_every_model_option(inputs, monkeypatch, capsys):
    seen = {}

    def capture(model, vae, options):
        seen.update(options, model=model, vae=vae)
        raise KeyboardInterrupt

    monkeypatch.setattr(frontend, "_load", capture)
    (inputs / "m.ckpt").write_bytes(b"x")
    (inputs / "emb").mkdir()
    assert main(["demo", "--model", str(inputs / "m.ckpt"), "--allow-pickle", "--dtype", "bfloat16", "--embeddings-dir",
                 str(inputs / "emb"), "--device", "cpu", "--out", str(inputs / "d"), "--no-progress"]) == 130
    assert seen["allow_pickle"] is True and str(seen["dtype"]) == "torch.bfloat16"
    assert seen["embeddings_dir"] == str(inputs / "emb") and seen["device"] == "cpu"
    assert main(["demo", "--vae", "v.safetensors", "--out", str(inputs / "d")]) == 2
    assert "--vae needs --model" in capsys.readouterr().err
    assert main(["demo", "--out", str(inputs / "d"), "--device", "cpu", "--kernels", "torch", "--no-progress"]) == 130
    assert seen["device"] == "cpu"  # tiny mode loads with the given device too


def test_unwritable_output_folder_is_refused_first_even_as_root(tiny_checkpoint, inputs, no_load, monkeypatch, capsys):
    """A folder that refuses new files (what a read-only --out does for a normal user), simulated for any user."""
    import inpaintlab.files

    def refuse(*args, **kwargs):
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(inpaintlab.files.tempfile, "mkstemp", refuse)
    assert main(_inpaint(tiny_checkpoint, inputs, "--out", str(inputs / "ro"))) == 2
    err = capsys.readouterr().err
    assert "ro: cannot write there (Permission denied)" in err and len(err.strip().splitlines()) == 1
