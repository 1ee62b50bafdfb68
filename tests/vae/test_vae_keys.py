"""Full-size SD1.x VAE on the meta device: key names, shapes and parameter count (spec checkpoints.md §1.2, §1.5)."""
from pathlib import Path

import pytest
import torch

from inpaintlab.vae import AutoencoderKL, VAEConfig, conv_attention_weights

MANIFEST = Path(__file__).parents[1] / "data" / "sd15_vae_keys.txt"
PREFIX = "first_stage_model."


def read_manifest() -> dict[str, tuple[int, ...]]:
    out = {}
    for line in MANIFEST.read_text().splitlines():
        if line and not line.startswith("#"):
            key, shape = line.split(" ")
            out[key] = tuple(int(s) for s in shape.strip("[]").split(","))
    return out


@pytest.fixture(scope="module")
def full_state_dict() -> dict[str, torch.Tensor]:
    with torch.device("meta"):
        return AutoencoderKL(VAEConfig()).state_dict()


def test_full_size_matches_manifest(full_state_dict):
    manifest = read_manifest()
    assert len(manifest) == 248
    ours = {PREFIX + k: tuple(v.shape) for k, v in full_state_dict.items()}
    assert set(ours) == set(manifest), (sorted(set(ours) ^ set(manifest)))[:10]
    assert ours == manifest
    assert MANIFEST.read_text().startswith("# SD1.x VAE checkpoint keys: 248 tensors")


def test_full_size_parameter_count_and_config_inference(full_state_dict):
    with torch.device("meta"):
        model = AutoencoderKL()
    assert sum(p.numel() for p in model.parameters()) == 83_653_863
    assert sum(v.numel() for v in full_state_dict.values()) == 83_653_863
    assert VAEConfig.from_state_dict(full_state_dict) == VAEConfig()


@pytest.mark.parametrize("linear_attention", [False, True])
def test_full_size_converts_onto_diffusers(full_state_dict, linear_attention):
    """diffusers' converter maps our 248 keys one to one onto the keys and shapes of its own full-size model."""
    diffusers = pytest.importorskip("diffusers")
    from diffusers.loaders.single_file_utils import convert_ldm_vae_checkpoint, create_vae_diffusers_config_from_ldm

    sd = dict(full_state_dict)
    if linear_attention:
        sd = {k: v[:, :, 0, 0] if ".mid.attn_1." in k and k.endswith("weight") and v.ndim == 4 else v
              for k, v in sd.items()}
        assert conv_attention_weights(sd).keys() == full_state_dict.keys()
        assert all(conv_attention_weights(sd)[k].shape == v.shape for k, v in full_state_dict.items())
    checkpoint = {PREFIX + k: v for k, v in sd.items()}
    ddconfig = dict(double_z=True, z_channels=4, resolution=256, in_channels=3, out_ch=3, ch=128, ch_mult=[1, 2, 4, 4],
                    num_res_blocks=2, attn_resolutions=[], dropout=0.0)
    original = {"model": {"params": {"scale_factor": 0.18215, "first_stage_config": {
        "params": {"embed_dim": 4, "ddconfig": ddconfig}}}}}
    config = create_vae_diffusers_config_from_ldm(original, checkpoint)
    converted = convert_ldm_vae_checkpoint(checkpoint, config)
    with torch.device("meta"):
        reference = diffusers.AutoencoderKL(**config).state_dict()
    assert len(converted) == len(reference) == 248
    assert {k: tuple(v.shape) for k, v in converted.items()} == {k: tuple(v.shape) for k, v in reference.items()}
