"""The tiny LoRA files `inpaintlab tiny` writes: every key lands on the tiny model of its family, a `<lora:…>` tag
changes the image and is recorded in `Lora hashes`, and the file is refused, naming both families, elsewhere."""
from __future__ import annotations

import numpy as np
import pytest

import inpaintlab
from inpaintlab.networks import NetworkError
from inpaintlab.tiny import make_tiny_lora, tiny_lora_state_dict

FAST = dict(steps=2, cfg_scale=5.0, seed=3, width=32, height=32, sampler="Euler")


@pytest.fixture(scope="module", autouse=True)
def _one_thread():
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def lora_dir(tmp_path_factory):
    folder = tmp_path_factory.mktemp("tiny-loras")
    for family in ("sd1", "sd2", "sdxl"):
        make_tiny_lora(folder / f"tiny-{family}-detail.safetensors", family)
    return folder


@pytest.mark.parametrize("family", ["sd1", "sd2", "sdxl"])
def test_every_key_matches_a_module(family, lora_dir):
    import torch

    from inpaintlab import tiny
    from inpaintlab.clip.model import CLIPTextTransformer
    from inpaintlab.clip.openclip import OpenCLIPTextTransformer
    from inpaintlab.networks import NetworkMerger
    from inpaintlab.unet import UNetModel

    with torch.device("meta"):  # the tiny checkpoints' architectures (tiny.build_tiny_family_models), no weights
        unet = UNetModel({"sd1": tiny.TINY_UNET, "sd2": tiny.TINY_SD2_UNET, "sdxl": tiny.TINY_SDXL_UNET}[family])
        te = OpenCLIPTextTransformer(tiny.TINY_OPENCLIP) if family == "sd2" else CLIPTextTransformer(tiny.TINY_CLIP)
        te2 = OpenCLIPTextTransformer(tiny.TINY_OPENCLIP) if family == "sdxl" else None
    prepared = NetworkMerger(unet, te, text_encoder_2=te2, family=family).prepare(
        lora_dir / f"tiny-{family}-detail.safetensors")
    n = sum(k.endswith(".lora_down.weight") for k in tiny_lora_state_dict(family))
    assert sum(1 if isinstance(u, tuple) else 3 for u in prepared.modules) == n
    assert any(not isinstance(u, tuple) for u in prepared.modules) == (family != "sd1")  # OpenCLIP's fused q/k/v


def test_deterministic():
    a, b = tiny_lora_state_dict("sdxl"), tiny_lora_state_dict("sdxl")
    assert a.keys() == b.keys() and all((a[k] == b[k]).all() for k in a)


@pytest.mark.parametrize("family", ["sd1", "sdxl"])
def test_tag_changes_the_image_and_is_recorded(family, lora_dir, tiny_checkpoint, tiny_family_checkpoints):
    path = tiny_checkpoint if family == "sd1" else tiny_family_checkpoints[family]
    pipe = inpaintlab.load(path, kernels="torch", lora_dir=lora_dir)
    plain = pipe.txt2img("a house", **FAST)
    tagged = pipe.txt2img(f"a house <lora:tiny-{family}-detail:1>", **FAST)
    a, b = np.asarray(plain.images[0], dtype=int), np.asarray(tagged.images[0], dtype=int)
    assert np.abs(a - b).max() > 8
    assert f"Lora hashes: \"tiny-{family}-detail: " in tagged.infotext
    other = "sd1" if family == "sdxl" else "sdxl"
    names = {"sd1": "Stable Diffusion 1.x", "sdxl": "SDXL"}
    with pytest.raises(NetworkError, match=f"a network for {names[other]} .*this model is {names[family]}"):
        pipe.txt2img(f"a house <lora:tiny-{other}-detail:1>", **FAST)
