"""DAT against spandrel 0.4.2 on random weights in the release layout (tiny configurations), the full-size variants'
key names and shapes on the meta device, and A1111's "DAT x2/x3/x4" names.

Tolerance: fp32, max |difference| ≤ 2e-5 on the raw network output (values of order 1; measured ≤ 5e-6 — DAT is
deeper than the other upscalers here, with two softmaxes and a LayerNorm per block, hence twice their bound).
"""
from __future__ import annotations

import pytest
import torch
from upscaler_fixtures import randomise, spandrel

from inpaintlab.upscalers import UpscalerDir, load
from inpaintlab.upscalers.dat import DAT, DATConfig
from inpaintlab.upscalers.load import build

TOL = 2e-5

# DAT's released variants (spandrel's / the DAT repository's option files), full size.
VARIANTS = {
    "DAT": dict(embed_dim=180, depth=[6] * 6, num_heads=[6] * 6, split_size=[8, 32], expansion_factor=4.0),
    "DAT-S": dict(embed_dim=180, depth=[6] * 6, num_heads=[6] * 6, split_size=[8, 16], expansion_factor=2.0),
    "DAT-2": dict(embed_dim=180, depth=[6] * 6, num_heads=[6] * 6, split_size=[8, 32], expansion_factor=2.0),
    "DAT-light": dict(embed_dim=60, depth=[18], num_heads=[6], split_size=[8, 32], expansion_factor=2.0,
                      resi_connection="3conv", upsampler="pixelshuffledirect"),
}


def _spandrel_dat(**kw):
    spandrel()
    from spandrel.architectures.DAT import DAT as RefDAT
    return RefDAT(**kw)


def _compare(sd, x, expect_scale):
    ref = spandrel().ModelLoader().load_from_state_dict({k: v.clone() for k, v in sd.items()}).eval()
    net, arch, scale, size = build(dict(sd))
    assert (arch, scale, ref.scale) == ("DAT", expect_scale, expect_scale)
    with torch.no_grad():
        raw_ref, raw = ref.model(x), net(x)
    assert raw.shape == raw_ref.shape == (x.shape[0], x.shape[1], x.shape[2] * scale, x.shape[3] * scale)
    assert raw_ref.std() > 0.05
    assert (raw - raw_ref).abs().max().item() <= TOL
    return net


# Embedding 64 is the smallest that gives the position-bias MLP more than one feature ((64 / 2 / 4) / 4 = 2).
@pytest.mark.parametrize("kw,shape", [
    # two groups: shifted blocks 2 (group 0) and 0 (group 1); 16×16 is the training size, so the file's masks are used
    (dict(img_size=16, depth=[3, 2], num_heads=[4, 2], upscale=2), (1, 3, 16, 16)),
    # ×3 head, a one-block group (heads read from the position MLP), no qkv bias; 18×21 pads to 20×24: fresh masks.
    # Group 0 has no shifted block, so spandrel falls back to its default training size 64: the masks must be 64²'s
    (dict(img_size=64, depth=[1, 5], num_heads=[4, 4], upscale=3, qkv_bias=False), (1, 3, 18, 21)),
    # DAT-light's shape: one group, 3conv residual, pixelshuffledirect ×4, batch 2, non-square
    (dict(img_size=8, depth=[5], num_heads=[2], upscale=4, resi_connection="3conv", upsampler="pixelshuffledirect"),
     (2, 3, 17, 9)),
])
def test_dat_matches_spandrel(kw, shape):
    m = _spandrel_dat(embed_dim=64, split_size=[2, 4], expansion_factor=2.0, **kw)
    sd = randomise(m.state_dict(), 21)
    assert "layers.0.blocks.0.attn.dwconv.1.running_var" in sd
    x = torch.rand(*shape, generator=torch.Generator().manual_seed(22))
    _compare(sd, x, kw["upscale"])


def test_dat_config_from_keys_and_descriptor(tmp_path):
    m = _spandrel_dat(img_size=8, embed_dim=64, split_size=[4, 8], depth=[3], num_heads=[2], expansion_factor=3.0,
                      upscale=2)
    sd = randomise(m.state_dict(), 23)
    cfg = DATConfig.from_state_dict(sd)
    assert cfg == DATConfig(embed_dim=64, depths=(3,), num_heads=(2,), split=(4, 8), expansion=3.0, img_size=8,
                            upscale=2)
    torch.save({"params": sd}, tmp_path / "DAT_x2.pth")
    model = load(tmp_path / "DAT_x2.pth")
    ref = spandrel().ModelLoader().load_from_file(str(tmp_path / "DAT_x2.pth"))
    assert model.arch == "DAT" and model.scale == 2 and model.tiling == "grid" and model.size.minimum == 16
    x = torch.rand(1, 3, 11, 13, generator=torch.Generator().manual_seed(24))  # below 16: reflect + replicate padding
    with torch.no_grad():
        assert (model(x) - ref(x)).abs().max().item() <= TOL


@pytest.mark.parametrize("variant", list(VARIANTS))
def test_full_size_variants_have_the_release_keys(variant, monkeypatch):
    """spandrel's DAT built on the meta device (its stochastic-depth schedule reads `.item()`, so that one linspace
    runs on the CPU): our module has the same key names, shapes and dtypes, and the config read back from those keys
    is the variant's."""
    kw = dict(VARIANTS[variant], upscale=4)
    linspace = torch.linspace
    monkeypatch.setattr(torch, "linspace", lambda *a, **k: linspace(*a, **{**k, "device": "cpu"}))
    with torch.device("meta"):
        ref = _spandrel_dat(**kw).state_dict()
    monkeypatch.undo()
    cfg = DATConfig(embed_dim=kw["embed_dim"], depths=tuple(kw["depth"]), num_heads=tuple(kw["num_heads"]),
                    split=tuple(kw["split_size"]), expansion=kw["expansion_factor"], upscale=4,
                    resi_connection=kw.get("resi_connection", "1conv"), upsampler=kw.get("upsampler", "pixelshuffle"))
    with torch.device("meta"):
        ours = DAT(cfg).state_dict()
    assert {k: (tuple(v.shape), v.dtype) for k, v in ours.items()} == {k: (tuple(v.shape), v.dtype) for k, v in ref.items()}
    # the split is read from rpe_biases' values: give the meta dict the real ones (small) and read the config back
    with torch.device("cpu"):
        small = DAT(DATConfig(embed_dim=64, depths=(1,), num_heads=(2,), split=cfg.split)).state_dict()
    ref["layers.0.blocks.0.attn.attns.0.rpe_biases"] = small["layers.0.blocks.0.attn.attns.0.rpe_biases"]
    assert DATConfig.from_state_dict(ref) == cfg


def test_a1111_dat_names(tmp_path):
    root = tmp_path / "models"
    (root / "DAT").mkdir(parents=True)
    m = _spandrel_dat(img_size=8, embed_dim=64, split_size=[2, 4], depth=[2], num_heads=[2], expansion_factor=2.0,
                      upscale=3)
    torch.save({"params": randomise(m.state_dict(), 25)}, root / "DAT" / "DAT_x3.pth")
    d = UpscalerDir(root)
    # A1111 lists the local file by its stem and the release model by its name, both the same file
    assert d.names() == ["None", "Lanczos", "Nearest", "DAT x3", "DAT_x3"]
    assert d.path("DAT x3") == d.path("DAT_x3") == root / "DAT" / "DAT_x3.pth"
    model = d.load("DAT x3")
    assert model.arch == "DAT" and model.scale == 3 and model.tiling == "grid" and model.name == "DAT x3"
