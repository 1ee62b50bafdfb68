"""The golden set: jobs on tiny checkpoints whose output bytes and infotexts are pinned (tests/data/golden/).

Each model family gets one list of cases; a case is (name, method, arguments). `run_model` loads the model once and
runs its cases; `record` rewrites the data files (`INPAINTLAB_RECORD_GOLDEN=1 python -m pytest
tests/pipeline/test_golden.py`, or `python tests/pipeline/golden_cases.py`). The set covers every sampler, each
masked-content mode, whole and only-masked, soft inpainting, Differential Diffusion, ControlNet (each preprocessor),
a LoRA, prompt scheduling, SD1 / SD1 9-channel / SD2-v / SDXL, txt2img / img2img / inpaint / inpaint sketch, batch 2,
variation seeds, seed resize and NV noise. A change that moves code without changing behaviour keeps every byte.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageDraw

DATA = Path(__file__).resolve().parent.parent / "data" / "golden"
MODELS = ("sd1", "sd1-inpainting", "sd2-v", "sdxl", "sdxl-inpainting")
FAST = dict(steps=3, cfg_scale=5.0, seed=77)


def picture(w: int, h: int, seed: int = 1) -> Image.Image:
    rng = np.random.default_rng(seed)
    base = np.linspace(0, 255, w)[None, :, None] * np.ones((h, 1, 3))
    return Image.fromarray(np.clip(base + rng.integers(-60, 60, (h, w, 3)), 0, 255).astype(np.uint8))


def ellipse_mask(size: tuple[int, int], box: tuple[int, int, int, int]) -> Image.Image:
    mask = Image.new("L", size, 0)
    ImageDraw.Draw(mask).ellipse(box, fill=255)
    return mask


def _lora(unet: torch.nn.Module, te: torch.nn.Module, seed: int) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    sd = {}
    for prefix, model, every in (("lora_unet_", unet, 5), ("lora_te_text_model_encoder_", te.encoder, 3)):
        layers = [(n, m) for n, m in model.named_modules() if isinstance(m, (torch.nn.Linear, torch.nn.Conv2d))]
        for name, m in layers[::every]:
            key, w = prefix + name.replace(".", "_"), m.weight
            sd[f"{key}.lora_down.weight"] = torch.randn(2, *w.shape[1:], generator=g) * 0.3
            sd[f"{key}.lora_up.weight"] = torch.randn(w.shape[0], 2, *([1, 1] if w.ndim == 4 else []), generator=g) * 0.3
    return sd


def write_files(folder: Path) -> dict[str, Path]:
    """The tiny checkpoints, a ControlNet and a LoRA folder, with fixed names (the infotexts carry them)."""
    from safetensors.torch import save_file

    from inpaintlab.tiny import (build_tiny_models, make_tiny_checkpoint, make_tiny_controlnet,
                                 write_tiny_family_files)

    folder.mkdir(parents=True, exist_ok=True)
    paths = {"sd1": make_tiny_checkpoint(folder / "tiny-sd1.safetensors"),
             "sd1-inpainting": make_tiny_checkpoint(folder / "tiny-sd1-inpainting.safetensors", inpainting=True),
             "controlnet": make_tiny_controlnet(folder / "tiny-controlnet.safetensors")}
    for p in write_tiny_family_files(folder):
        paths[p.name[len("tiny-"):-len(".safetensors")]] = p
    loras = folder / "loras"
    loras.mkdir(exist_ok=True)
    unet, _, te = build_tiny_models(seed=0)
    save_file(_lora(unet, te, 1), str(loras / "detail.safetensors"))
    paths["loras"] = loras
    return paths


def cases(model: str, files: dict[str, Path]) -> list[tuple[str, str, dict]]:
    """(name, method, keyword arguments) for one model; images and masks are built here, deterministically."""
    from inpaintlab.samplers import SAMPLERS

    s = 64 if model.startswith("sdxl") else 32
    image, mask = picture(s + 16, s), ellipse_mask((s + 16, s), (12, 6, 12 + s // 2, 6 + s // 2))
    size = dict(width=s, height=s)
    inp = dict(image=image, mask=mask, prompt="a red door", negative_prompt="blurry", **size, **FAST)
    out: list[tuple[str, str, dict]] = []
    if model == "sd1":
        for sampler in SAMPLERS:
            out.append((f"inpaint {sampler}", "inpaint", {**inp, "sampler": sampler, "steps": 5}))
        out.append(("txt2img Euler a", "txt2img", dict(prompt="a cat", sampler="Euler a", **size, **FAST)))
        out.append(("txt2img DDIM eta", "txt2img", dict(prompt="a cat", sampler="DDIM", eta=0.5, **size, **FAST)))
        out.append(("txt2img Euler churn", "txt2img", dict(prompt="a cat", sampler="Euler", s_churn=0.5, s_noise=0.9,
                                                          **size, **FAST)))
        for content in ("fill", "original", "latent_noise", "latent_nothing"):
            out.append((f"masked content {content}", "inpaint", {**inp, "masked_content": content}))
            out.append((f"only masked {content}", "inpaint", {**inp, "masked_content": content,
                                                              "inpaint_area": "only_masked", "padding": 6}))
        out.append(("fill in latent space", "inpaint", {**inp, "masked_content": "fill", "fill_space": "latent"}))
        out.append(("inpaint not masked", "inpaint", {**inp, "mask_mode": "not_masked", "mask_blur": 2}))
        out.append(("resize mode crop", "inpaint", {**inp, "resize_mode": 1, "mask_blur": 0}))
        out.append(("resize mode fill", "inpaint", {**inp, "resize_mode": 2}))
        out.append(("img2img", "img2img", {k: v for k, v in inp.items() if k != "mask"} | {"denoising_strength": 0.6}))
        out.append(("txt2img batch 2 variation", "txt2img", dict(prompt="a cat", batch_size=2, subseed=5,
                                                                subseed_strength=0.3, **size, **FAST)))
        out.append(("inpaint batch 2", "inpaint", {**inp, "batch_size": 2, "sampler": "Euler a"}))
        out.append(("seed resize", "txt2img", dict(prompt="a cat", seed_resize_from=(24, 40), **size, **FAST)))
        out.append(("NV noise ENSD", "inpaint", {**inp, "rng_source": "NV", "sampler": "Euler a", "ensd": 31337,
                                                 "masked_content": "latent_noise", "subseed": 3,
                                                 "subseed_strength": 0.5}))
        out.append(("prompt schedule", "inpaint", {**inp, "prompt": "a [red:blue:2] door AND a cat :0.5",
                                                   "negative_prompt": "[blurry|ugly]"}))
        out.append(("clip skip", "txt2img", dict(prompt="a (red:1.3) cat", clip_skip=2, **size, **FAST)))
        soft = dict(soft_inpainting=True, mask_blur=6, schedule_bias=1.5, preservation_strength=0.75,
                    transition_contrast_boost=8.0, mask_influence=0.25, difference_threshold=1.0,
                    difference_contrast=3.0)
        out.append(("soft inpainting", "inpaint", {**inp, **soft}))
        out.append(("soft inpainting only masked", "inpaint", {**inp, **soft, "inpaint_area": "only_masked",
                                                               "padding": 6, "batch_size": 2}))
        out.append(("soft inpainting DDIM", "inpaint", {**inp, **soft, "sampler": "DDIM"}))
        out.append(("differential diffusion", "inpaint", {**inp, "differential_diffusion": True, "mask_blur": 6}))
        out.append(("differential diffusion Euler a", "inpaint", {**inp, "differential_diffusion": True,
                                                                  "sampler": "Euler a"}))
        out.append(("lora tag", "txt2img", dict(prompt="a cat <lora:detail:0.8>", **size, **FAST)))
        out.append(("lora tag inpaint", "inpaint", {**inp, "prompt": "a door <lora:detail:0.5:1.2>"}))
        cn = dict(controlnet=files["controlnet"])
        for pre in ("inpaint_only", "inpaint_global_harmonious", "inpaint_only+lama"):
            extra = {"controlnet_lama": Image.new("RGB", image.size, (128, 64, 200))} if "lama" in pre else {}
            out.append((f"controlnet {pre}", "inpaint", {**inp, **cn, "controlnet_preprocessor": pre, **extra}))
            out.append((f"controlnet txt2img {pre}", "txt2img", dict(prompt="a cat", controlnet_image=image,
                                                                     controlnet_mask=mask, controlnet_preprocessor=pre,
                                                                     **cn, **extra, **size, **FAST)))
        out.append(("controlnet window", "inpaint", {**inp, **cn, "controlnet_preprocessor": "inpaint_global_harmonious",
                                                     "control_weight": 0.6, "guidance_start": 0.3, "guidance_end": 0.8,
                                                     "control_mode": "ControlNet is more important"}))
        out.append(("inpaint sketch", "inpaint_sketch", dict(image=image, sketch=_sketch(image), prompt="a cat",
                                                             mask_alpha=30.0, **size, **FAST)))
    elif model == "sd1-inpainting":
        out.append(("inpaint", "inpaint", dict(inp)))
        out.append(("inpaint mask weight", "inpaint", {**inp, "inpainting_mask_weight": 0.5, "sampler": "DDIM"}))
        out.append(("only masked latent noise", "inpaint", {**inp, "masked_content": "latent_noise",
                                                            "inpaint_area": "only_masked", "padding": 6}))
        out.append(("soft inpainting", "inpaint", {**inp, "soft_inpainting": True, "mask_blur": 6}))
        out.append(("txt2img", "txt2img", dict(prompt="a cat", **size, **FAST)))
        out.append(("img2img", "img2img", {k: v for k, v in inp.items() if k != "mask"}))
        out.append(("controlnet", "inpaint", {**inp, "controlnet": files["controlnet"],
                                              "controlnet_preprocessor": "inpaint_global_harmonious"}))
    else:
        out.append(("inpaint", "inpaint", dict(inp)))
        out.append(("inpaint only masked", "inpaint", {**inp, "inpaint_area": "only_masked", "padding": 8,
                                                       "sampler": "Euler a", "masked_content": "fill"}))
        out.append(("txt2img batch 2", "txt2img", dict(prompt="a cat", batch_size=2, **size, **FAST)))
        timestep = "Euler" if model == "sd2-v" else "DDIM"  # the timestep samplers refuse v-prediction
        out.append((f"img2img {timestep}", "img2img", {k: v for k, v in inp.items() if k != "mask"} | {"sampler": timestep}))
        if model == "sdxl":
            out.append(("prompt schedule", "txt2img", dict(prompt="a [cat:dog:1]", **size, **FAST)))
    return out


def _sketch(image: Image.Image) -> Image.Image:
    sketch = image.copy()
    ImageDraw.Draw(sketch).line((4, 4, 30, 20), fill=(250, 10, 10), width=5)
    return sketch


def run_model(model: str, files: dict[str, Path], load=None) -> dict[str, tuple[np.ndarray, list[str]]]:
    """{case name: (uint8 images [B,H,W,3], infotexts)} for one model, loaded once."""
    import inpaintlab

    load = load or inpaintlab.load
    pipe = load(files[model], kernels="torch", lora_dir=files["loras"] if model == "sd1" else None)
    out = {}
    for name, method, kwargs in cases(model, files):
        kwargs = dict(kwargs)
        args = [kwargs.pop(k) for k in ("image", "sketch", "mask") if k in kwargs]
        if method == "img2img" or method == "txt2img":
            args = args[:1] if method == "img2img" else []
        result = getattr(pipe, method)(*args, kwargs.pop("prompt"), **kwargs)
        out[name] = (np.stack([np.asarray(im) for im in result.images]), list(result.infotexts))
    return out


def machine() -> dict[str, str]:
    """What the recorded bytes depend on besides the code: torch's CPU kernels differ by instruction set."""
    return {"cpu_capability": torch.backends.cpu.get_cpu_capability(), "torch": torch.__version__.split("+")[0]}


def record(files: dict[str, Path]) -> None:
    for model in MODELS:
        record_model(model, files)


def record_model(model: str, files: dict[str, Path]) -> None:
    from inpaintlab.files import atomic_path

    DATA.mkdir(parents=True, exist_ok=True)
    if True:
        results = run_model(model, files)
        arrays = {f"{i:03d}": images for i, (images, _) in enumerate(results.values())}
        with atomic_path(DATA / f"{model}.npz") as tmp:
            with open(tmp, "wb") as fh:
                np.savez_compressed(fh, **arrays)
        texts = {name: infotexts for name, (_, infotexts) in results.items()}
        with atomic_path(DATA / f"{model}.json") as tmp:
            Path(tmp).write_text(json.dumps(texts, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
        with atomic_path(DATA / "machine.json") as tmp:
            Path(tmp).write_text(json.dumps(machine()) + "\n", encoding="utf-8")


def load_expected(model: str) -> dict[str, tuple[np.ndarray, list[str]]]:
    texts = json.loads((DATA / f"{model}.json").read_text(encoding="utf-8"))
    with np.load(DATA / f"{model}.npz") as arrays:
        return {name: (arrays[f"{i:03d}"], infotexts) for i, (name, infotexts) in enumerate(texts.items())}


if __name__ == "__main__":
    import sys
    import tempfile

    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
    torch.set_num_threads(1)
    with tempfile.TemporaryDirectory() as tmp:
        record(write_files(Path(tmp)))
