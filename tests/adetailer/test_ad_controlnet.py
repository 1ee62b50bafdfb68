"""A ControlNet model in an ADetailer tab (spec §5.6): one unit per pass with ADetailer's default preprocessor for the
model's kind, its weight and window, Balanced and Pixel Perfect, on the pass's own image and mask; the model found by
name as --from-png finds ControlNets; the keys as ADetailer writes them, replayed bit for bit. Also the "Only masked"
crop of the job's image for a non-inpaint unit (§7.2 step 2)."""
import numpy as np
import pytest
from PIL import Image, ImageDraw

import inpaintlab
from inpaintlab.adetailer import ADetailer, ADetailerUnit, detail_image
from inpaintlab.adetailer.passes import controlnet_label, controlnet_unit
from inpaintlab.checkpoint import legacy_model_hash
from inpaintlab.controlnet import ControlNetUnit
from inpaintlab.detect.tiny import make_tiny_detector
from inpaintlab.cli import main
from inpaintlab.infotext import parse_infotext, read_png_infotext, settings_from_infotext
from inpaintlab.pipeline import TechniqueError
from inpaintlab.tiny import make_tiny_controlnet

SETTINGS = {"steps": 2, "sampler": "Euler", "cfg_scale": 5.0}
BASE = {**SETTINGS, "seed": 5, "width": 64, "height": 64}


@pytest.fixture(scope="module")
def pipe(tiny_checkpoint):
    return inpaintlab.load(tiny_checkpoint, kernels="torch")


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    folder = tmp_path_factory.mktemp("ad-controlnet")
    return {"inpaint": make_tiny_controlnet(folder / "control_tiny_inpaint.safetensors"),
            "tile": make_tiny_controlnet(folder / "control_tiny_tile.safetensors", seed=1),
            "detector": make_tiny_detector(folder / "tiny-face.safetensors"), "folder": folder}


def _picture(w=96, h=80):
    return Image.fromarray(np.random.default_rng(3).integers(0, 256, (h, w, 3), dtype=np.uint8))


def _box(size, box):
    m = Image.new("L", size)
    ImageDraw.Draw(m).rectangle(box, fill=255)
    return m


@pytest.mark.parametrize("name, module", [
    ("control_v11p_sd15_inpaint [ebff9138]", "inpaint_global_harmonious"),
    ("control_v11f1e_sd15_tile [a371b31b]", "tile_resample"),
    ("xinsir-union [12345678]", "none"),          # no kind: the pass's image is the hint
    ("control_v11f1e_sd15_Tile [a371b31b]", "none"),  # ADetailer matches the kinds case-sensitively
])
def test_default_module_by_the_model_kind(name, module, files):
    unit = controlnet_unit(ADetailerUnit(ad_controlnet_model=name, ad_controlnet_weight=0.7,
                                         ad_controlnet_guidance_start=0.1, ad_controlnet_guidance_end=0.8),
                           controlnets={name: files["inpaint"]})
    assert isinstance(unit, ControlNetUnit) and unit.preprocessor == module
    assert (unit.weight, unit.guidance_start, unit.guidance_end, unit.control_mode) == (0.7, 0.1, 0.8, "Balanced")
    assert unit.pixel_perfect and unit.image is None and unit.mask is None and unit.resize_mode is None
    explicit = controlnet_unit(ADetailerUnit(ad_controlnet_model=name, ad_controlnet_module="inpaint_only"),
                               controlnets={name: files["inpaint"]})
    assert explicit.preprocessor == "inpaint_only"


@pytest.mark.parametrize("name, module", [("control_v11p_sd15_lineart", "lineart_coarse"),
                                          ("control_v11p_sd15_openpose", "openpose_full"),
                                          ("control_v11f1p_sd15_depth", "depth_midas"),
                                          ("control_v11p_sd15_scribble", "t2ia_sketch_pidi")])
def test_network_preprocessors_are_refused_in_one_line(name, module, files):
    with pytest.raises(TechniqueError, match=f"'{module}'.*annotator network") as error:
        controlnet_unit(ADetailerUnit(ad_controlnet_model=name), controlnets={name: files["inpaint"]})
    assert "\n" not in str(error.value)


def test_the_model_is_found_by_name_in_the_working_directory(files, tmp_path, monkeypatch):
    monkeypatch.chdir(files["folder"])
    label = f"control_tiny_inpaint [{legacy_model_hash(files['inpaint'])}]"
    assert controlnet_label(str(files["inpaint"])) == label  # as sd-webui-controlnet lists it
    assert controlnet_unit(ADetailerUnit(ad_controlnet_model=label)).model.name == "control_tiny_inpaint.safetensors"
    monkeypatch.chdir(tmp_path)
    with pytest.raises(TechniqueError, match="ControlNet model 'control_tiny_inpaint .*file not found"):
        controlnet_unit(ADetailerUnit(ad_controlnet_model=label))


@pytest.mark.parametrize("kind, module", [("inpaint", "inpaint_global_harmonious"), ("tile", "tile_resample")])
def test_a_pass_runs_the_unit_on_its_own_image(pipe, files, kind, module):
    image, face = _picture(), _box((96, 80), (30, 20, 49, 41))
    unit = ADetailerUnit("face", ad_controlnet_model=str(files[kind]), ad_controlnet_weight=0.8,
                         ad_inpaint_only_masked_padding=8)
    out, passes = detail_image(pipe, image, [unit], seed=9, prompt="a face", settings=SETTINGS, size=(64, 64),
                               detectors={"face": lambda im: [face]})
    mask = passes[0]["mask"]
    args = dict(steps=2, sampler="Euler", cfg_scale=5.0, seed=9, width=64, height=64, mask_blur=4,
                masked_content="original", denoising_strength=0.4, inpaint_area="only_masked", padding=8)
    direct = pipe.inpaint(image, mask, "a face", "", controlnets=[
        ControlNetUnit(files[kind], preprocessor=module, weight=0.8, pixel_perfect=True)], **args).images[0]
    assert np.array_equal(np.asarray(out), np.asarray(direct))
    without = pipe.inpaint(image, mask, "a face", "", **args).images[0]
    assert not np.array_equal(np.asarray(out), np.asarray(without))


def test_keys_as_adetailer_writes_them_and_read_back(pipe, files):
    face = _box((64, 64), (20, 20, 30, 30))
    unit = ADetailerUnit("face", ad_inpaint_only_masked_padding=8, ad_controlnet_model=str(files["inpaint"]),
                         ad_controlnet_weight=0.5, ad_controlnet_guidance_end=0.9)
    technique = ADetailer(unit, detectors={"face": lambda im: [face]})
    result = pipe.txt2img("a man", **BASE, techniques=[technique])
    assert len(technique.passes) == 1
    fields = parse_infotext(result.infotext)
    label = f"control_tiny_inpaint [{legacy_model_hash(files['inpaint'])}]"
    keys = [k for k in fields if k.startswith("ADetailer ControlNet")]
    assert keys == ["ADetailer ControlNet model", "ADetailer ControlNet weight", "ADetailer ControlNet guidance end"]
    assert (fields["ADetailer ControlNet model"], fields["ADetailer ControlNet weight"],
            fields["ADetailer ControlNet guidance end"]) == (label, "0.5", "0.9")
    read = settings_from_infotext(result.infotext, strict=True)
    assert read["ad_controlnet_model"] == label and "ad_controlnet_module" not in read  # not written at "None"
    assert (read["ad_controlnet_weight"], read["ad_controlnet_guidance_end"]) == (0.5, 0.9)


def test_from_png_finds_the_controlnet_by_name_and_replays(files, tiny_checkpoint, monkeypatch, tmp_path):
    monkeypatch.chdir(files["folder"])
    common = ["--model", str(tiny_checkpoint), "--kernels", "torch", "--no-progress"]
    assert main(["txt2img", *common, "--prompt", "a man", "--steps", "2", "--sampler", "Euler", "--width", "64",
                 "--height", "64", "--seed", "5", "--ad-model", files["detector"].name, "--ad-confidence", "0.05",
                 "--ad-mask-k", "1", "--ad-controlnet-model", str(files["tile"]), "--ad-controlnet-guidance-start",
                 "0.5", "--out", str(tmp_path / "first")]) == 0
    text = read_png_infotext(tmp_path / "first" / "00000-5.png")
    assert f"ADetailer ControlNet model: control_tiny_tile [{legacy_model_hash(files['tile'])}], " \
           "ADetailer ControlNet guidance start: 0.5, ADetailer version: 25.3.0" in text
    assert main(["txt2img", *common, "--from-png", str(tmp_path / "first" / "00000-5.png"), "--strict",
                 "--out", str(tmp_path / "again")]) == 0
    a = np.asarray(Image.open(tmp_path / "first" / "00000-5.png").convert("RGB"))
    b = np.asarray(Image.open(tmp_path / "again" / "00000-5.png").convert("RGB"))
    assert np.array_equal(a, b) and read_png_infotext(tmp_path / "again" / "00000-5.png") == text


def test_setup_refuses_before_any_work(pipe, files):
    technique = ADetailer(ADetailerUnit("face", ad_controlnet_model="control_v11p_sd15_openpose"),
                          controlnets={"control_v11p_sd15_openpose": files["inpaint"]},
                          detectors={"face": lambda im: pytest.fail("detected before the check")})
    with pytest.raises(TechniqueError, match="tab 1: .*'openpose_full'"):
        pipe.txt2img("a man", **BASE, techniques=[technique])


def test_plain_unit_crops_the_job_image_for_only_masked():
    """sd-webui-controlnet's try_crop_image_with_a1111_mask on a non-inpaint unit: each channel cropped to A1111's
    crop region and resized (A1111 resize mode 2, Lanczos) to the processing size; with module "none" and Just
    Resize that is the hint exactly."""
    import torch

    from inpaintlab.controlnet.unit import prepare_units
    from inpaintlab.masking import resize_image
    from inpaintlab.tiny import build_tiny_controlnet

    image, mask, crop = _picture(), _box((96, 80), (30, 20, 49, 41)), (14, 10, 70, 58)
    model = build_tiny_controlnet()
    prepared = prepare_units([ControlNetUnit(model, preprocessor="none", pixel_perfect=True)], width=64, height=48,
                             encode=lambda x: pytest.fail("no latent for a plain unit"), load=lambda m: m,
                             unet_channels=4, init=image, mask=mask, mask_blur=4, crop=crop, a1111_resize_mode=0)
    channels = [np.asarray(resize_image(2, Image.fromarray(np.asarray(image)[:, :, i]).crop(crop), 64, 48).convert("L"))
                for i in range(3)]
    expected = torch.from_numpy(np.stack(channels, axis=2)).permute(2, 0, 1)[None] / 255.0
    assert torch.equal(prepared.inputs[0].hint, expected)
