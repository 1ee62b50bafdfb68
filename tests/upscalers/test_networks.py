"""Each upscaler architecture against spandrel 0.4.2 on random weights in the real file layouts (tiny configs).

Both sides get the same raw state dict; ours loads it strictly under the file's own names. Tolerance: fp32, max
|difference| ≤ 1e-5 on the raw network output (values of order 1) and on the clamped descriptor output.
"""
from __future__ import annotations

import pytest
import torch
from safetensors.torch import save_file
from upscaler_fixtures import esrgan_layout, randomise, spandrel

from inpaintlab.upscalers import UpscalerError, load
from inpaintlab.upscalers.load import build

TOL = 1e-5


def _compare(sd, x, expect_arch, expect_scale):
    sp = spandrel()
    ref = sp.ModelLoader().load_from_state_dict({k: v.clone() for k, v in sd.items()}).eval()
    net, arch, scale, size = build(dict(sd))
    assert (arch, scale) == (expect_arch, expect_scale)
    assert ref.scale == scale
    with torch.no_grad():
        raw_ref, raw = ref.model(x), net(x)
    assert raw.shape == raw_ref.shape == (x.shape[0], 3, x.shape[2] * scale, x.shape[3] * scale)
    assert raw_ref.std() > 0.05  # a live output, not a constant
    assert (raw - raw_ref).abs().max().item() <= TOL
    return net, ref


def _esrgan_old(nf, nb, scale, in_nc=3, seed=0, plus=False):
    sp = spandrel()
    from spandrel.architectures.ESRGAN import ESRGAN
    m = ESRGAN(in_nc=in_nc, out_nc=3, num_filters=nf, num_blocks=nb, scale=scale, plus=plus,
               shuffle_factor=int((in_nc // 3) ** 0.5) if in_nc > 3 else None)
    assert sp
    return randomise(m.state_dict(), seed)


@pytest.mark.parametrize("layout", ["old", "new", "kair"])
def test_rrdbnet_layouts_match_spandrel(layout):
    sd = esrgan_layout(_esrgan_old(nf=8, nb=2, scale=4, seed=1), layout, nb=2, n_up=2)
    x = torch.rand(1, 3, 13, 11, generator=torch.Generator().manual_seed(2))
    _compare(sd, x, "ESRGAN", 4)


def test_rrdbnet_pixel_unshuffle_x2_like_real_esrgan_x2plus():
    # R-ESRGAN 2x+: 12 input channels (unshuffle 2), internal ×4; odd sizes exercise the reflect padding.
    sd = esrgan_layout(_esrgan_old(nf=8, nb=1, scale=4, in_nc=12, seed=3), "new", nb=1, n_up=2)
    x = torch.rand(1, 3, 10, 14, generator=torch.Generator().manual_seed(4))
    _compare(sd, x, "ESRGAN", 2)
    x = torch.rand(1, 3, 9, 7, generator=torch.Generator().manual_seed(5))
    net, _, _, _ = build(sd)
    assert net(x).shape == (1, 3, 18, 14)


def test_rrdbnet_x2_and_esrgan_plus():
    _compare(_esrgan_old(nf=8, nb=1, scale=2, seed=6), torch.rand(1, 3, 8, 9), "ESRGAN", 2)
    sd = _esrgan_old(nf=8, nb=1, scale=4, seed=7, plus=True)
    assert any(".conv1x1." in k for k in sd)
    _compare(sd, torch.rand(1, 3, 7, 8), "ESRGAN", 4)


@pytest.mark.parametrize("scale", [1, 2, 4])
def test_compact_matches_spandrel(scale):
    spandrel()
    from spandrel.architectures.Compact import Compact
    sd = randomise(Compact(num_in_ch=3, num_out_ch=3, num_feat=8, num_conv=3, upscale=scale).state_dict(), scale)
    _compare(sd, torch.rand(1, 3, 9, 12, generator=torch.Generator().manual_seed(8)), "Compact", scale)


@pytest.mark.parametrize("upsampler,upscale,resi", [("nearest+conv", 4, "3conv"), ("pixelshuffle", 3, "1conv"),
                                                     ("pixelshuffledirect", 2, "1conv"), ("", 1, "3conv")])
def test_swinir_matches_spandrel(upsampler, upscale, resi):
    spandrel()
    from spandrel.architectures.SwinIR import SwinIR
    m = SwinIR(img_size=16, embed_dim=12, depths=[2, 3], num_heads=[2, 3], window_size=4, mlp_ratio=2.0,
               upscale=upscale, upsampler=upsampler, resi_connection=resi)
    sd = randomise(m.state_dict(), 9)
    assert "layers.0.residual_group.blocks.1.attn_mask" in sd
    # 16×16 uses the file's shift mask; 18×21 pads to 20×24 and needs freshly computed masks.
    for shape in ((1, 3, 16, 16), (1, 3, 18, 21)):
        x = torch.rand(*shape, generator=torch.Generator().manual_seed(10))
        _compare(sd, x, "SwinIR", upscale)


def test_file_wrappers_prefixes_and_descriptor_call(tmp_path):
    sp = spandrel()
    sd = esrgan_layout(_esrgan_old(nf=8, nb=1, scale=4, seed=11), "new", nb=1, n_up=2)
    torch.save({"params_ema": {f"module.{k}": v for k, v in sd.items()}}, tmp_path / "RealESRGAN_x4plus.pth")
    save_file(sd, str(tmp_path / "x.safetensors"))
    x = torch.rand(1, 3, 5, 6, generator=torch.Generator().manual_seed(12))
    ref = sp.ModelLoader().load_from_file(str(tmp_path / "RealESRGAN_x4plus.pth"))
    for name in ("RealESRGAN_x4plus.pth", "x.safetensors"):
        model = load(tmp_path / name)
        assert model.arch == "ESRGAN" and model.scale == 4 and model.tiling == "grid"
        with torch.no_grad():
            assert (model(x) - ref(x)).abs().max().item() <= TOL


def test_descriptor_pads_small_inputs_like_spandrel():
    sp = spandrel()
    from spandrel.architectures.SwinIR import SwinIR
    sd = randomise(SwinIR(img_size=8, embed_dim=8, depths=[2], num_heads=[2], window_size=4, upscale=2,
                          upsampler="pixelshuffledirect").state_dict(), 13)
    ref = sp.ModelLoader().load_from_state_dict(dict(sd))
    net, arch, scale, size = build(dict(sd))
    from inpaintlab.upscalers import UpscalerModel
    model = UpscalerModel(net, arch, scale, size)
    x = torch.rand(1, 3, 5, 11, generator=torch.Generator().manual_seed(14))  # below the minimum of 16: reflect+replicate
    with torch.no_grad():
        assert (model(x) - ref(x)).abs().max().item() <= TOL
    assert model.tiling == "average"


def test_bad_files_get_one_line_errors(tmp_path):
    torch.save({"foo.weight": torch.zeros(3)}, tmp_path / "odd.pth")
    with pytest.raises(UpscalerError, match="not a known upscaler architecture"):
        load(tmp_path / "odd.pth")
    torch.save({"relative_position_index_SA": torch.zeros(3)}, tmp_path / "hat.pth")
    with pytest.raises(UpscalerError, match="HAT upscalers are not supported"):
        load(tmp_path / "hat.pth")
    torch.save({"first_stage_model.x": torch.zeros(3), "model.diffusion_model.y": torch.zeros(3)}, tmp_path / "l.pth")
    with pytest.raises(UpscalerError, match="LDSR upscalers are not supported"):
        load(tmp_path / "l.pth")
    torch.save({"m_head.0.weight": torch.zeros(3), "m_tail.0.weight": torch.zeros(3)}, tmp_path / "scunet.pth")
    with pytest.raises(UpscalerError, match="SCUNet weights with missing or misshapen tensors") as e:
        load(tmp_path / "scunet.pth")
    assert "\n" not in str(e.value)
    (tmp_path / "broken.pth").write_bytes(b"not a zip")
    with pytest.raises(UpscalerError, match="could not be read") as e:
        load(tmp_path / "broken.pth")
    assert "\n" not in str(e.value)
    sd = esrgan_layout(_esrgan_old(nf=8, nb=1, scale=4), "new", nb=1, n_up=2)
    sd["conv_hr.weight"] = sd["conv_hr.weight"][:4]
    torch.save(sd, tmp_path / "shapes.pth")
    with pytest.raises(UpscalerError, match="do not fit"):
        load(tmp_path / "shapes.pth")
    with pytest.raises(FileNotFoundError):
        load(tmp_path / "missing.pth")
