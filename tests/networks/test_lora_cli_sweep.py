"""`--lora-dir` on the command line, `--from-png` renaming tags by their recorded hash (A1111's paste), and a sweep
whose axis is a LoRA weight."""
from __future__ import annotations

import json
import shutil

import numpy as np
import torch
from PIL import Image, ImageDraw
from safetensors.torch import save_file

from inpaintlab.cli import main
from inpaintlab.infotext import parse_infotext, read_png_infotext
from inpaintlab.networks import network_hash
from inpaintlab.study import load_spec, sweep
from inpaintlab.tiny import build_tiny_models


def write_lora(path, seed=0):
    unet, _, te = build_tiny_models(seed=0)
    g = torch.Generator().manual_seed(seed)
    sd = {}
    for prefix, model in (("lora_unet_", unet), ("lora_te_text_model_", te)):
        layers = [(n, m) for n, m in model.named_modules() if isinstance(m, (torch.nn.Linear, torch.nn.Conv2d))
                  and not n.startswith("embeddings")]
        for name, m in layers[::4]:
            key = prefix + name.replace(".", "_")
            w = m.weight
            sd[f"{key}.lora_down.weight"] = torch.randn(2, *w.shape[1:], generator=g) * 0.3
            sd[f"{key}.lora_up.weight"] = torch.randn(w.shape[0], 2, *([1, 1] if w.ndim == 4 else []),
                                                      generator=g) * 0.3
    save_file(sd, str(path))
    return path


def test_cli_lora_dir_and_from_png_rename_by_hash(tiny_checkpoint, tmp_path, capsys):
    loras = tmp_path / "loras"
    loras.mkdir()
    write_lora(loras / "detail.safetensors")
    common = ["--model", str(tiny_checkpoint), "--kernels", "torch", "--width", "32", "--height", "32", "--steps", "2",
              "--no-progress"]
    assert main(["txt2img", *common, "--lora-dir", str(loras), "--prompt", "a ball <lora:detail:0.7>", "--seed", "5",
                 "--out", str(tmp_path / "a")]) == 0
    (first,) = (tmp_path / "a").glob("*.png")
    fields = parse_infotext(read_png_infotext(first))
    assert fields["Lora hashes"] == f"detail: {network_hash(loras / 'detail.safetensors')[:12]}"

    # Elsewhere the same file is called "renamed": the pasted prompt names it by the recorded hash.
    other = tmp_path / "other"
    other.mkdir()
    shutil.copy(loras / "detail.safetensors", other / "renamed.safetensors")
    capsys.readouterr()
    assert main(["txt2img", *common, "--lora-dir", str(other), "--from-png", str(first),
                 "--out", str(tmp_path / "b")]) == 0
    assert "<lora:renamed:0.7>" in capsys.readouterr().out
    (second,) = (tmp_path / "b").glob("*.png")
    assert np.array_equal(np.asarray(Image.open(first)), np.asarray(Image.open(second)))

    assert main(["txt2img", *common, "--lora-dir", str(other), "--prompt", "x <lora:detail:1>",
                 "--out", str(tmp_path / "c")]) == 2
    err = capsys.readouterr().err
    assert "'detail' not found" in err and "available: renamed" in err


def test_sweep_over_a_lora_weight(tiny_checkpoint, tmp_path):
    loras = tmp_path / "loras"
    loras.mkdir()
    write_lora(loras / "detail.safetensors")
    Image.fromarray(np.random.default_rng(1).integers(0, 256, (32, 32, 3), dtype=np.uint8)).save(tmp_path / "i.png")
    mask = Image.new("L", (32, 32))
    ImageDraw.Draw(mask).rectangle((8, 8, 23, 23), fill=255)
    mask.save(tmp_path / "m.png")
    spec = {"model": str(tiny_checkpoint), "image": "i.png", "mask": "m.png", "kernels": "torch", "lora_dir": "loras",
            "base": {"prompt": "a ball <lora:detail:1>", "steps": 2}, "x": {"lora:detail": [0.0, 0.8]},
            "y": {"denoising_strength": [1.0]}, "seeds": [3]}
    (tmp_path / "spec.json").write_text(json.dumps(spec))
    loaded = load_spec(tmp_path / "spec.json")
    assert [c.settings(loaded.base)["prompt"] for c in loaded.cells()] == ["a ball <lora:detail:0>",
                                                                          "a ball <lora:detail:0.8>"]
    rows = sweep(tmp_path / "spec.json", tmp_path / "out")
    assert [parse_infotext(r["infotext"])["Prompt"] for r in rows] == ["a ball <lora:detail:0>",
                                                                      "a ball <lora:detail:0.8>"]
    assert all("Lora hashes" in r["infotext"] for r in rows)
    images = [np.asarray(Image.open(tmp_path / "out" / r["image"])) for r in rows]
    assert not np.array_equal(*images)
    # Another file under the same name: the cells are new (their keys carry the network's hash), not resumed.
    write_lora(loras / "detail.safetensors", seed=1)
    again = sweep(tmp_path / "spec.json", tmp_path / "out")
    assert {r["key"] for r in again}.isdisjoint({r["key"] for r in rows})


def test_lora_tags_and_hashes_count_as_applied_but_other_tags_warn():
    from inpaintlab.infotext import unapplied

    text = ("a <lora:x:0.5> <lyco:y:1> b <hypernet:z:1>\nNegative prompt: <lora:n:1>\n"
            'Steps: 20, Sampler: Euler, Seed: 1, Size: 64x64, Lora hashes: "x: 0123456789ab, y: ba9876543210"')
    assert unapplied(parse_infotext(text)) == ["prompt tag <hypernet:z:1>"]
