"""LoRA through the pipeline: prompt tags on a tiny checkpoint, the infotext's Lora hashes, the PNG round trip,
apply/clear through the Pipeline, and the lookup errors."""
from __future__ import annotations

import hashlib
import struct

import pytest
import torch
from safetensors.torch import save_file

import inpaintlab
from inpaintlab.infotext import parse_infotext, read_png_infotext, save_png
from inpaintlab.networks import NetworkError

FAST = dict(steps=3, cfg_scale=5.0, seed=77, width=32, height=32)


def addnet_hash_by_hand(path) -> str:
    data = path.read_bytes()
    (n,) = struct.unpack("<Q", data[:8])
    return hashlib.sha256(data[8 + n:]).hexdigest()


def random_lora(model, prefix: str, seed: int, every: int) -> dict:
    g = torch.Generator().manual_seed(seed)
    sd = {}
    layers = [(n, m) for n, m in model.named_modules() if isinstance(m, (torch.nn.Linear, torch.nn.Conv2d))]
    for name, m in layers[::every]:
        key = prefix + name.replace(".", "_")
        w = m.weight
        sd[f"{key}.lora_down.weight"] = torch.randn(2, *w.shape[1:], generator=g) * 0.3
        sd[f"{key}.lora_up.weight"] = torch.randn(w.shape[0], 2, *([1, 1] if w.ndim == 4 else []), generator=g) * 0.3
    return sd


@pytest.fixture(scope="module")
def lora_dir(tmp_path_factory, tiny_checkpoint):
    from inpaintlab.tiny import build_tiny_models

    unet, _, te = build_tiny_models(seed=0)
    d = tmp_path_factory.mktemp("loras")
    (d / "sub").mkdir()
    detail = {**random_lora(unet, "lora_unet_", 1, 5), **random_lora(te.encoder, "lora_te_text_model_encoder_", 2, 3)}
    save_file(detail, str(d / "detail.safetensors"))
    save_file(random_lora(unet, "lora_unet_", 3, 4), str(d / "sub" / "style_v2.safetensors"),
              metadata={"ss_output_name": "style"})
    return d


@pytest.fixture(scope="module")
def pipe(tiny_checkpoint, lora_dir):
    return inpaintlab.load(tiny_checkpoint, kernels="torch", lora_dir=lora_dir)


def weights(p):
    return {**{"u." + k: v.clone() for k, v in p.unet.state_dict().items()},
            **{"t." + k: v.clone() for k, v in p.text_encoder.state_dict().items()}}


def test_two_lora_tags_end_to_end_with_both_hashes_in_the_png(pipe, lora_dir, tmp_path):
    base = weights(pipe)
    prompt = "a red door <lora:detail:0.8>, <lora:style:0.5:1.2>"
    result = pipe.txt2img(prompt, "blurry", **FAST)
    assert [(n.name, n.te, n.unet) for n in pipe.active_networks] == [("detail", 0.8, 0.8), ("style", 0.5, 1.2)]
    path = save_png(result.images[0], tmp_path / "out.png", result.infotext)
    fields = parse_infotext(read_png_infotext(path))
    assert fields["Prompt"] == prompt  # the tags stay in the infotext prompt
    h1 = addnet_hash_by_hand(lora_dir / "detail.safetensors")[:12]
    h2 = addnet_hash_by_hand(lora_dir / "sub" / "style_v2.safetensors")[:12]
    assert fields["Lora hashes"] == f"detail: {h1}, style: {h2}"
    assert f'Lora hashes: "detail: {h1}, style: {h2}"' in result.infotext

    plain = pipe.txt2img("a red door , ", "blurry", **FAST)  # the stripped prompt, no networks: the base weights
    assert all(torch.equal(v, base[k]) for k, v in weights(pipe).items())
    assert "Lora hashes" not in plain.infotext
    assert (torch.tensor(list(plain.images[0].tobytes())) != torch.tensor(list(result.images[0].tobytes()))).any()


def test_tags_change_conditioning_through_the_text_encoder_only(pipe):
    """The prompt is encoded without its tags, by the text encoder with the TE deltas merged."""
    pipe.clear_networks()
    plain = pipe.encode_prompt("a cat , red")
    pipe.apply_networks([("detail", 0.8, 0.0)])
    merged = pipe.encode_prompt("a cat , red")
    cond, _ = pipe._conditioning("a cat <lora:detail:0.8:0>, red", "", 1, 1, 3)
    pipe.clear_networks()
    assert torch.equal(cond, merged) and not torch.equal(cond, plain)


def test_negative_prompt_tags_stay_text(pipe):
    pipe.clear_networks()
    pipe._activate_prompt_networks("a cat")
    _, uncond = pipe._conditioning("a cat", "ugly <lora:detail:1>", 1, 1, 3)
    assert pipe.active_networks == []
    assert torch.equal(uncond, pipe.encode_prompt("ugly <lora:detail:1>"))
    assert not torch.equal(uncond, pipe.encode_prompt("ugly "))


def test_apply_and_clear_through_the_pipeline(pipe, lora_dir):
    pipe.clear_networks()
    base = weights(pipe)
    pipe.apply_networks([(lora_dir / "detail.safetensors", 0.5, 1.5), ("style", 1.0, 1.0)])
    assert sum(not torch.equal(v, base[k]) for k, v in weights(pipe).items()) > 5
    pipe.clear_networks()
    assert all(torch.equal(v, base[k]) for k, v in weights(pipe).items())


def test_unknown_name_lists_what_is_available(pipe):
    with pytest.raises(NetworkError, match=r"'nope' not found in .*available: detail, style, style_v2"):
        pipe.txt2img("x <lora:nope:1>", **FAST)


def test_no_lora_dir_is_a_clear_error(tiny_checkpoint):
    bare = inpaintlab.load(tiny_checkpoint, kernels="torch")
    with pytest.raises(NetworkError, match="no network directory is set"):
        bare.txt2img("x <lora:detail:1>", **FAST)
