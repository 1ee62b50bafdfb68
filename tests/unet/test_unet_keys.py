"""Full-size SD1.5 UNet key set and shapes, on the meta device (no memory, no weights).

Regenerate the manifest with `python tests/unet/test_unet_keys.py --write` (then review the diff).
"""
from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch
from unet_helpers import PREFIX, diffusers_convert

from inpaintlab.unet import UNetConfig, UNetModel

MANIFEST = Path(__file__).resolve().parents[1] / "data" / "sd15_unet_keys.txt"
HEADER = """\
# SD1.5-inpainting UNet: checkpoint keys (prefix model.diffusion_model.) and shapes, one "key<TAB>d0,d1,..." a line.
# Generated from the architecture: inpaintlab.unet.UNetModel(UNetConfig(in_channels=9)).state_dict() on the meta
# device (ldm openaimodel.UNetModel, configs v1-inpainting-inference.yaml). Cross-checked by
# tests/unet/test_unet_keys.py: diffusers 0.42.1 convert_ldm_unet_checkpoint maps these 686 keys one to one onto the
# 686 parameters of UNet2DConditionModel with equal shapes; 686 keys as in mlcommons/training #807;
# 859,535,364 parameters.
# The plain SD1.5 UNet has the same keys; only input_blocks.0.0.weight is [320,4,3,3] there (859,520,964 parameters).
"""


def meta_unet(in_channels: int) -> UNetModel:
    with torch.device("meta"):
        return UNetModel(UNetConfig(in_channels=in_channels))


def manifest_text() -> str:
    sd = meta_unet(9).state_dict()
    return HEADER + "".join(f"{PREFIX}{k}\t{','.join(map(str, v.shape))}\n" for k, v in sd.items())


def read_manifest() -> dict[str, tuple[int, ...]]:
    out = {}
    for line in MANIFEST.read_text().splitlines():
        if line and not line.startswith("#"):
            key, shape = line.split("\t")
            out[key] = tuple(int(d) for d in shape.split(","))
    return out


@pytest.mark.parametrize("in_channels,params", [(4, 859_520_964), (9, 859_535_364)])
def test_full_size_counts(in_channels, params):
    sd = meta_unet(in_channels).state_dict()
    assert len(sd) == 686
    assert sum(v.numel() for v in sd.values()) == params
    assert tuple(sd["input_blocks.0.0.weight"].shape) == (320, in_channels, 3, 3)
    assert tuple(sd["out.2.weight"].shape) == (4, 320, 3, 3)


def test_manifest_matches_architecture():
    manifest = read_manifest()
    assert len(manifest) == 686
    assert manifest[PREFIX + "input_blocks.0.0.weight"] == (320, 9, 3, 3)
    ours = {PREFIX + k: tuple(v.shape) for k, v in meta_unet(9).state_dict().items()}
    assert ours == manifest
    plain = {PREFIX + k: tuple(v.shape) for k, v in meta_unet(4).state_dict().items()}
    assert {k for k in plain if plain[k] != manifest[k]} == {PREFIX + "input_blocks.0.0.weight"}


@pytest.mark.parametrize("in_channels", [4, 9])
def test_diffusers_converter_is_a_bijection_onto_diffusers_keys(in_channels):
    diffusers = pytest.importorskip("diffusers")
    model = meta_unet(in_channels)
    checkpoint = {PREFIX + k: v for k, v in model.state_dict().items()}
    dconfig, converted = diffusers_convert(checkpoint, model.config)
    with torch.device("meta"):
        reference = diffusers.UNet2DConditionModel(**dconfig).state_dict()
    assert dconfig["in_channels"] == in_channels
    assert set(converted) == set(reference)
    assert {k: tuple(v.shape) for k, v in converted.items()} == {k: tuple(v.shape) for k, v in reference.items()}
    # every one of our tensors is used exactly once (the converter only moves references)
    assert sorted(id(v) for v in converted.values()) == sorted(id(v) for v in checkpoint.values())


if __name__ == "__main__":
    if sys.argv[1:] == ["--write"]:
        MANIFEST.parent.mkdir(parents=True, exist_ok=True)
        MANIFEST.write_text(manifest_text())
        print(f"wrote {MANIFEST}")
    else:
        print(__doc__)
