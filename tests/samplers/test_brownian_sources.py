"""Brownian-tree node draws follow A1111's noise source (its torchsde `_randn` replacement), and sampler settings are
sweep axes."""
import json

import numpy as np
import pytest
import torch
from PIL import Image, ImageDraw

from inpaintlab.samplers import DiscreteSchedule, build_sigmas
from inpaintlab.samplers.brownian import BrownianTreeNoiseSampler, _torchsde_randn, randn_local
from inpaintlab.samplers.philox import PhiloxGenerator


def test_randn_local_sources():
    shape = (2, 3, 4)
    cpu = randn_local(123, shape, "CPU", "cpu")
    assert torch.equal(cpu, torch.randn(shape, generator=torch.Generator().manual_seed(123)))
    # "GPU" on a CPU device is the CPU generator (A1111's devices.device is the CPU then)
    assert torch.equal(randn_local(123, shape, "GPU", "cpu"), cpu)
    assert torch.equal(randn_local(123, shape, "NV", "cpu"), PhiloxGenerator(123).randn(shape))
    with pytest.raises(ValueError, match="noise source"):
        randn_local(1, shape, "TPU", "cpu")


def test_tree_nodes_use_the_source_and_the_patch_is_scoped():
    from torchsde._brownian import brownian_interval

    original = brownian_interval._randn
    sigmas = build_sigmas(DiscreteSchedule(), "DPM++ 2M SDE", "Automatic", 6)
    x = torch.zeros(2, 4, 3, 3)
    lo, hi = sigmas[sigmas > 0].min(), sigmas.max()
    cpu = BrownianTreeNoiseSampler(x, lo, hi, [5, 6])
    nv = BrownianTreeNoiseSampler(x, lo, hi, [5, 6], source="NV")
    nv_again = BrownianTreeNoiseSampler(x, lo, hi, [5, 6], source="NV")
    a, b = cpu(sigmas[1], sigmas[2]), nv(sigmas[1], sigmas[2])
    assert not torch.allclose(a, b)  # different node noise
    assert torch.equal(b, nv_again(sigmas[1], sigmas[2]))  # deterministic per seed
    assert brownian_interval._randn is original  # torchsde is left as it was
    # inside the scope every torchsde draw is the first draw of a generator seeded with the node seed
    with _torchsde_randn("NV"):
        assert torch.equal(brownian_interval._randn((3,), torch.float32, torch.device("cpu"), 77),
                           PhiloxGenerator(77).randn((3,)))
    assert brownian_interval._randn is original


def test_sampler_settings_are_sweep_axes(tiny_checkpoint, tmp_path):
    from inpaintlab.study import load_spec, sweep

    rng = np.random.default_rng(1)
    Image.fromarray(rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)).save(tmp_path / "image.png")
    mask = Image.new("L", (32, 32))
    ImageDraw.Draw(mask).rectangle((8, 8, 23, 23), fill=255)
    mask.save(tmp_path / "mask.png")
    raw = {"model": str(tiny_checkpoint), "image": "image.png", "mask": "mask.png", "kernels": "torch",
           "base": {"prompt": "a ball", "steps": 2, "mask_blur": 1, "scheduler": "Beta"},
           "x": {"sampler": ["Euler a", "DDIM"]}, "y": {"eta": [0.0, 0.6]}, "seeds": [3]}
    (tmp_path / "spec.json").write_text(json.dumps(raw))
    rows = sweep(load_spec(tmp_path / "spec.json"), tmp_path / "out")
    texts = {(r["x"]["sampler"], r["y"]["eta"]): r["infotext"] for r in rows}
    assert "Eta: 0.6," in texts["Euler a", 0.6] and "Eta DDIM: 0.6," in texts["DDIM", 0.6]
    assert "Eta DDIM" not in texts["DDIM", 0.0] and "Eta: 0.0," in texts["Euler a", 0.0]
    assert all("Schedule type: Beta" in t for t in texts.values())
    with pytest.raises(ValueError, match="unknown sampler"):
        load_spec({**raw, "x": {"sampler": ["Euler", "DDPM"]}}, root=tmp_path)
