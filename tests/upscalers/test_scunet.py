"""SCUNet (A1111's "ScuNET GAN" / "ScuNET PSNR") against spandrel 0.4.2 on random weights in the release layout, its
key names at full size, and how A1111 runs it (averaging tiles of 256, overlap 8, ×1).

Width 64 is the release width and also the smallest SCUNet allows (32-wide heads on half of the channels); the tiny
configurations shorten the stages instead. Tolerance: fp32, max |difference| ≤ 1e-5 × max(1, max |reference|) on
the raw output (random weights drive it to tens; measured 0: both run the same operations in the same order).
"""
from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image
from upscaler_fixtures import randomise, spandrel

from inpaintlab.upscalers import Tiling, UpscalerDir, load, model_pass
from inpaintlab.upscalers import scale as scale_mod
from inpaintlab.upscalers.load import build
from inpaintlab.upscalers.scunet import SCUNet, SCUNetConfig
from inpaintlab.upscalers.tiling import from_bgr_tensor, to_bgr_tensor


def _ref_scunet(config, seed):
    spandrel()
    from spandrel.architectures.SCUNet import SCUNet as RefSCUNet
    with torch.device("meta"):  # built on meta, then filled: spandrel's initialisation is slow and overwritten anyway
        m = RefSCUNet(config=list(config), dim=64)
    sd = {k: torch.zeros(v.shape, dtype=v.dtype) for k, v in m.state_dict().items()}
    return randomise(sd, seed)


@pytest.mark.parametrize("config,shape", [
    # every stage with a plain and a shifted block; 70×45 is reflect-padded to 128×64 (two windows wide at the body)
    ((2, 2, 2, 2, 2, 2, 2), (1, 3, 70, 45)),
    # one-block stages (no shift there), three body blocks
    ((1, 2, 1, 3, 2, 1, 2), (1, 3, 40, 41)),
])
def test_scunet_matches_spandrel(config, shape, monkeypatch):
    linspace = torch.linspace  # spandrel reads its drop-path schedule with .item(), which meta tensors lack
    monkeypatch.setattr(torch, "linspace", lambda *a, **k: linspace(*a, **{**k, "device": "cpu"}))
    sd = _ref_scunet(config, 31)
    monkeypatch.undo()
    ref = spandrel().ModelLoader().load_from_state_dict({k: v.clone() for k, v in sd.items()}).eval()
    net, arch, scale, size = build(dict(sd))
    assert (arch, scale, size.minimum, ref.scale) == ("SCUNet", 1, 40, 1)
    assert net.cfg == SCUNetConfig(config=config)
    x = torch.rand(*shape, generator=torch.Generator().manual_seed(32))
    with torch.no_grad():
        raw_ref, raw = ref.model(x), net(x)
    assert raw.shape == raw_ref.shape == shape
    assert raw_ref.std() > 0.05
    assert (raw - raw_ref).abs().max().item() <= 1e-5 * max(1.0, raw_ref.abs().max().item())


def test_full_size_scunet_keys(monkeypatch):
    linspace = torch.linspace
    monkeypatch.setattr(torch, "linspace", lambda *a, **k: linspace(*a, **{**k, "device": "cpu"}))
    spandrel()
    from spandrel.architectures.SCUNet import SCUNet as RefSCUNet
    with torch.device("meta"):
        ref = RefSCUNet().state_dict()
        ours = SCUNet(SCUNetConfig()).state_dict()
    assert {k: (tuple(v.shape), v.dtype) for k, v in ours.items()} == {k: (tuple(v.shape), v.dtype) for k, v in ref.items()}
    assert SCUNetConfig.from_state_dict(ref) == SCUNetConfig()


def test_scunet_runs_as_a1111_runs_it(tmp_path, monkeypatch):
    monkeypatch.setattr(torch, "linspace", lambda *a, _f=torch.linspace, **k: _f(*a, **{**k, "device": "cpu"}))
    sd = _ref_scunet((1, 1, 1, 1, 1, 1, 1), 33)
    monkeypatch.undo()
    (tmp_path / "ScuNET").mkdir()
    torch.save({"params": sd}, tmp_path / "ScuNET" / "scunet_color_real_psnr.pth")
    d = UpscalerDir(tmp_path)
    assert d.names() == ["None", "Lanczos", "Nearest", "ScuNET PSNR"]
    model = d.load("ScuNET PSNR")
    assert model.arch == "SCUNet" and model.scale == 1 and model.tiling == "average" and model.tile_defaults == (256, 8)
    assert load(tmp_path / "ScuNET" / "scunet_color_real_psnr.pth").tile_defaults == (256, 8)
    # model_pass runs it with A1111's upscale_2 arguments: SCUNET_tile 256, SCUNET_tile_overlap 8, scale 1
    seen = []
    monkeypatch.setattr(scale_mod, "upscale_average", lambda m, x, tile, overlap, s: seen.append((tile, overlap, s)) or x)
    model_pass(model, Image.new("RGB", (50, 60)))
    model_pass(model, Image.new("RGB", (50, 60)), Tiling(tile=128))
    assert seen == [(256, 8, 1), (128, 8, 1)]
    # and on a square picture smaller than a tile it is one call of the network on the BGR picture, rounded
    monkeypatch.undo()
    arr = np.random.default_rng(34).integers(0, 256, (44, 44, 3), dtype=np.uint8)
    with torch.no_grad():
        want = from_bgr_tensor(model(to_bgr_tensor(arr)))
    assert np.array_equal(np.asarray(model_pass(model, Image.fromarray(arr))), want)
