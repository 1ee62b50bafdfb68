"""SDXL ControlNet units end to end on the tiny SDXL checkpoint: `Module: none` with a ready hint, the `ControlNet 0`
entry written and replayed bit for bit by --from-png, the same image from the diffusers-layout file of the same
weights, the extension's SDXL soft scales, and ControlNets of the other family refused by name."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

import inpaintlab
from inpaintlab.checkpoint import legacy_model_hash
from inpaintlab.cli import main
from inpaintlab.controlnet import ControlledUNet, ControlNetUnit, control_scales
from inpaintlab.errors import SettingsError
from inpaintlab.infotext import parse_infotext, read_png_infotext, settings_from_infotext
from inpaintlab.tiny import make_tiny_sdxl_controlnet

SIZE = 64
FAST = dict(steps=3, seed=7, sampler="Euler", cfg_scale=5.0)


@pytest.fixture(scope="module")
def xl_controlnet(tmp_path_factory):
    return make_tiny_sdxl_controlnet(tmp_path_factory.mktemp("tiny-xl-cn") / "tiny-xl-controlnet.safetensors")


@pytest.fixture(scope="module")
def xl_pipe(tiny_family_checkpoints):
    return inpaintlab.load(tiny_family_checkpoints["sdxl"], kernels="torch")


def _hint(seed: int = 5) -> Image.Image:
    return Image.fromarray(np.random.default_rng(seed).integers(0, 256, (SIZE, SIZE, 3), dtype=np.uint8))


def test_soft_scales_are_the_extensions_first_ten():
    """The extension: [w * 0.825 ** (12 - i) for i in range(13)][:10] for SDXL; the middle block gets 0.825 ** 3."""
    ext = [0.7 * 0.825 ** float(12 - i) for i in range(13)]
    assert control_scales(0.7, "ControlNet is more important", 10, sdxl=True) == ext[:10]
    assert control_scales(0.7, "My prompt is more important", 13) == ext
    assert control_scales(0.7, "Balanced", 10, sdxl=True) == [0.7] * 10
    # a 7-residual tiny SDXL ControlNet drops the same last three exponents
    assert control_scales(1.0, "prompt", 7, sdxl=True) == [0.825 ** float(9 - i) for i in range(7)]


def test_module_none_unit_acts_with_sdxl_scales(xl_pipe, xl_controlnet, monkeypatch):
    seen = []
    real = ControlledUNet.controls

    def spy(self, x, timesteps, context, cond_mark=None, y=None):
        out = real(self, x, timesteps, context, cond_mark, y)
        seen.append((self.units[0], x, timesteps, context, y, out))
        return out

    monkeypatch.setattr(ControlledUNet, "controls", spy)
    unit = ControlNetUnit(xl_controlnet, preprocessor="none", image=_hint(), weight=0.8,
                          control_mode="My prompt is more important")
    result = xl_pipe.txt2img("a cat", width=SIZE, height=SIZE, controlnets=[unit], **FAST)
    monkeypatch.undo()
    ci, x, t, context, y, control = seen[-1]
    assert y is not None and y.shape == (2, 1600) and len(control) == 7  # cond + uncond rows get SDXL's ADM vector
    with torch.inference_mode():
        raw = ci.model(x, ci.hint, t, context, y)
    # the extension's 13 soft scales cut to the ControlNet's residuals: the middle block gets 0.8 * 0.825 ** 3
    for i, (c, r) in enumerate(zip(control, raw)):
        assert torch.equal(c, r * (0.8 * 0.825 ** float(9 - i))), i
    plain = xl_pipe.txt2img("a cat", width=SIZE, height=SIZE, **FAST)
    assert not torch.equal(result.samples, plain.samples) and torch.isfinite(result.samples).all()


def test_cli_entry_written_and_replayed_bit_for_bit(tmp_path, tiny_family_checkpoints, xl_controlnet, monkeypatch):
    import shutil

    shutil.copy(xl_controlnet, tmp_path / "tiny-xl-controlnet.safetensors")
    _hint().save(tmp_path / "hint.png")
    model = str(tiny_family_checkpoints["sdxl"])
    args = ["txt2img", "--model", model, "--kernels", "torch", "--no-progress", "--steps", "3", "--width", str(SIZE),
            "--height", str(SIZE), "--seed", "5", "--prompt", "a cat",
            "--controlnet", str(tmp_path / "tiny-xl-controlnet.safetensors"), "--controlnet-preprocessor", "none",
            "--controlnet-image", str(tmp_path / "hint.png"), "--control-weight", "0.9", "--control-mode",
            "controlnet", "--guidance-end", "0.8", "--out", str(tmp_path / "a")]
    assert main(args) == 0
    text = read_png_infotext(tmp_path / "a" / "00000-5.png")
    entry = parse_infotext(text)["ControlNet 0"]
    assert entry == (f"Module: none, Model: tiny-xl-controlnet [{legacy_model_hash(xl_controlnet)}], Weight: 0.9, "
                     "Resize Mode: Crop and Resize, Processor Res: 0.5, Threshold A: 0.5, Threshold B: 0.5, "
                     "Guidance Start: 0.0, Guidance End: 0.8, Pixel Perfect: False, "
                     "Control Mode: ControlNet is more important")
    back = settings_from_infotext(text, strict=True)
    assert (back["controlnet"], back["controlnet_preprocessor"], back["control_weight"]) == (
        "tiny-xl-controlnet", "none", 0.9)
    monkeypatch.chdir(tmp_path)  # the model is found by its recorded name; the hint is given again
    replay = ["txt2img", "--model", model, "--kernels", "torch", "--no-progress", "--from-png",
              str(tmp_path / "a" / "00000-5.png"), "--controlnet-image", str(tmp_path / "hint.png"),
              "--out", str(tmp_path / "b"), "--strict"]
    assert main(replay) == 0
    first = np.asarray(Image.open(tmp_path / "a" / "00000-5.png"))
    assert np.array_equal(first, np.asarray(Image.open(tmp_path / "b" / "00000-5.png")))


def test_diffusers_layout_file_gives_the_same_image(tmp_path, xl_pipe, xl_controlnet):
    """The same weights saved by diffusers (its converter on our file, then ControlNetModel.state_dict())."""
    diffusers = pytest.importorskip("diffusers")
    sfu = pytest.importorskip("diffusers.loaders.single_file_utils")
    from safetensors.torch import load_file, save_file

    from inpaintlab.controlnet import load_controlnet

    original = load_file(str(xl_controlnet))
    cfg = load_controlnet(xl_controlnet, kernels="torch").config.unet
    config = dict(in_channels=4, conditioning_channels=3, block_out_channels=cfg.widths,
                  down_block_types=("DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D"),
                  layers_per_block=cfg.num_res_blocks, cross_attention_dim=cfg.context_dim,
                  attention_head_dim=tuple(w // 64 for w in cfg.widths), use_linear_projection=True,
                  transformer_layers_per_block=(1, 1, 2), addition_embed_type="text_time",
                  addition_time_embed_dim=256, projection_class_embeddings_input_dim=cfg.adm_in_channels)
    converted = sfu.convert_controlnet_checkpoint(original, config)
    for new, old in sfu.DIFFUSERS_TO_LDM_MAPPING["controlnet"]["addition_embed_type"].items():
        converted[new] = original["control_model." + old]
    ref = diffusers.ControlNetModel(**config)
    ref.load_state_dict(converted, strict=True)
    path = tmp_path / "diffusion_pytorch_model.safetensors"
    save_file({k: v.contiguous() for k, v in ref.state_dict().items()}, str(path))
    images = [xl_pipe.txt2img("a cat", width=SIZE, height=SIZE, **FAST, controlnets=[
        ControlNetUnit(p, preprocessor="none", image=_hint(6))]) for p in (xl_controlnet, path)]
    assert torch.equal(images[0].samples, images[1].samples)
    assert "Model: diffusion_pytorch_model [" in parse_infotext(images[1].infotext)["ControlNet 0"]


def test_other_family_is_refused_naming_both(xl_pipe, xl_controlnet, tiny_checkpoint, tiny_controlnet):
    with pytest.raises(SettingsError, match=r"^ControlNet 'tiny-controlnet' is an SD 1\.x ControlNet and cannot be "
                                            r"used with this SDXL checkpoint$"):
        xl_pipe.txt2img("a cat", width=SIZE, height=SIZE, steps=1, controlnet=tiny_controlnet,
                        controlnet_preprocessor="none", controlnet_image=_hint())
    sd1 = inpaintlab.load(tiny_checkpoint, kernels="torch")
    with pytest.raises(SettingsError, match=r"'tiny-xl-controlnet' is an SDXL ControlNet .* SD 1\.x checkpoint$"):
        sd1.txt2img("a cat", width=SIZE, height=SIZE, steps=1, controlnet=xl_controlnet,
                    controlnet_preprocessor="none", controlnet_image=_hint())
