"""Control-LoRA files: the merged ControlNet weights against a float64 re-derivation of the extension's rule
(W = W_unet + up.flatten(1) @ down.flatten(1), bias and full tensors from the file, other bound layers the UNet's),
clear errors, and a control-LoRA unit on the tiny SDXL checkpoint bound to the pipeline's own UNet."""
from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn

import inpaintlab
from inpaintlab.checkpoint import CheckpointError, legacy_model_hash
from inpaintlab.controlnet import ControlNet, ControlNetConfig, ControlNetUnit, load_controlnet
from inpaintlab.controlnet.control_lora import merge_control_lora
from inpaintlab.infotext import parse_infotext
from inpaintlab.tiny import TINY_SDXL_UNET, reinit_
from inpaintlab.unet import UNetModel

RANK = 4
XL = dataclasses.replace(TINY_SDXL_UNET, in_channels=4)


def control_lora(unet: nn.Module, seed: int = 0) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
    """(control-LoRA state dict as Stability stores it, float64 expected ControlNet weights) for `unet`.

    Linear and Conv2d layers of the encoder copy get rank-4 up/down matrices, except every third one, which stays bound
    to the UNet's weight as it is; biases, norms, label_emb, the hint encoder and the zero convs are stored in full."""
    g = torch.Generator().manual_seed(seed)
    full = reinit_(ControlNet(ControlNetConfig(unet=XL)), seed + 10)
    unet_sd = unet.state_dict()
    layers = [name for name, m in full.named_modules() if isinstance(m, (nn.Linear, nn.Conv2d))
              and name.startswith(("time_embed.", "input_blocks.", "middle_block."))]
    lowrank = [name for i, name in enumerate(layers) if i % 3]
    bound = set(layers)
    sd: dict[str, torch.Tensor] = {"lora_controlnet": torch.tensor([])}
    expected: dict[str, torch.Tensor] = {}
    for key, value in full.state_dict().items():
        path = key.rsplit(".", 1)[0]
        if key.endswith(".weight") and path in bound:
            w = unet_sd[key].double()
            if path in lowrank:
                shape = value.shape
                up = torch.randn(shape[0], RANK, *([1, 1] if len(shape) == 4 else []), generator=g) * 0.05
                down = torch.randn(RANK, *shape[1:], generator=g) * 0.05
                sd[path + ".up"], sd[path + ".down"] = up.half(), down.half()  # as stored (fp16)
                w = w + (up.half().double().flatten(1) @ down.half().double().flatten(1)).reshape(shape)
            expected[key] = w
        else:
            sd[key] = value.clone()
            expected[key] = value.double()
    return sd, expected


@pytest.fixture(scope="module")
def unet():
    return reinit_(UNetModel(XL), 3).eval()


def test_merge_matches_float64_rule(unet):
    sd, expected = control_lora(unet)
    merged = merge_control_lora(sd, unet)
    assert merged.keys() - {"lora_controlnet"} == expected.keys()
    worst = 0.0
    for key, ref in expected.items():
        err = (merged[key].double() - ref).abs().max().item()
        worst = max(worst, err / max(ref.abs().max().item(), 1e-12))
        assert err <= 1e-6 * ref.abs().max().item() + 1e-12, key  # one float32 rounding of the sum
    print(f"control-LoRA merge: max relative error vs float64 {worst:.3g}")
    model = load_controlnet({"control_model." + k: v for k, v in sd.items()}, unet=unet, kernels="torch")
    assert model.control_lora and model.config.family == "sdxl"
    assert all(torch.equal(v, merged[k].float()) for k, v in model.state_dict().items())
    # Negative control: bound to another UNet the merged weights differ.
    other = merge_control_lora(sd, reinit_(UNetModel(XL), 4))
    lowrank = [k[: -len(".up")] + ".weight" for k in sd if k.endswith(".up")]
    assert len(lowrank) > 20 and not any(torch.equal(other[k], merged[k]) for k in lowrank)


def test_clear_errors(unet):
    sd, _ = control_lora(unet)
    with pytest.raises(CheckpointError, match="control-LoRA file holds differences from a UNet"):
        load_controlnet(sd)
    path = next(k for k in sd if k.endswith(".down"))[: -len(".down")]
    broken = {k: v for k, v in sd.items() if k != path + ".down"}
    with pytest.raises(CheckpointError, match=f"'{path}' has an up matrix without its pair"):
        load_controlnet(broken, unet=unet)
    nine = reinit_(UNetModel(dataclasses.replace(XL, in_channels=9)), 3)
    with pytest.raises(CheckpointError, match="4 latent channels, this UNet's first conv 9"):
        load_controlnet(sd, unet=nine)
    with pytest.raises(CheckpointError, match="no Linear or Conv2d there"):
        load_controlnet({**sd, "output_blocks.0.0.in_layers.2.up": torch.zeros(1, 1, 1, 1),
                         "output_blocks.0.0.in_layers.2.down": torch.zeros(1, 1, 3, 3)}, unet=unet)


def test_control_lora_unit_on_sdxl_binds_to_the_pipelines_unet(tmp_path, tiny_family_checkpoints):
    from safetensors.torch import save_file

    pipe = inpaintlab.load(tiny_family_checkpoints["sdxl"], kernels="torch")
    sd, _ = control_lora(pipe.unet, seed=1)
    lora_path = tmp_path / "control-lora-tiny-rank4.safetensors"
    save_file(sd, str(lora_path))
    full_path = tmp_path / "merged.safetensors"
    save_file({k: v.float().contiguous() for k, v in merge_control_lora(sd, pipe.unet).items()
               if k != "lora_controlnet"}, str(full_path))
    hint = Image.fromarray(np.random.default_rng(2).integers(0, 256, (64, 64, 3), dtype=np.uint8))
    fast = dict(width=64, height=64, steps=3, seed=7, sampler="Euler", cfg_scale=5.0)
    a, b = (pipe.txt2img("a cat", **fast, controlnets=[ControlNetUnit(p, preprocessor="none", image=hint)])
            for p in (lora_path, full_path))
    assert torch.equal(a.samples, b.samples)
    assert not torch.equal(a.samples, pipe.txt2img("a cat", **fast).samples)
    entry = parse_infotext(a.infotext)["ControlNet 0"]
    assert entry.startswith(f"Module: none, Model: control-lora-tiny-rank4 [{legacy_model_hash(lora_path)}], ")
