"""ADetailer passes on a tiny SD1 checkpoint with a Python detector: each pass is A1111's only-masked inpaint with
ADetailer's settings (bit-exact against a direct call), pixels outside the padded crop are unchanged, masks run in
order on the previous result with seeds seed + j and [SEP]/[PROMPT] prompts, and the technique writes the keys."""
import types

import numpy as np
import pytest
from PIL import Image, ImageDraw

import inpaintlab
from inpaintlab.adetailer import ADetailer, ADetailerUnit, detail_image, mask_prompts
from inpaintlab.masking.crop import expand_crop_region, get_crop_region_v2
from inpaintlab.masking.masks import blur_mask
from inpaintlab.pipeline import TechniqueError

SETTINGS = {"steps": 2, "sampler": "Euler", "cfg_scale": 5.0, "seed": 7}


@pytest.fixture(scope="module")
def pipe(tiny_checkpoint):
    return inpaintlab.load(tiny_checkpoint, kernels="torch")


def _picture(w=128, h=96):
    rng = np.random.default_rng(0)
    return Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8))


def _box_mask(size, box):
    m = Image.new("L", size)
    ImageDraw.Draw(m).rectangle(box, fill=255)
    return m


def test_one_pass_is_the_a1111_inpaint_and_leaves_the_rest_untouched(pipe):
    image = _picture()
    face = _box_mask(image.size, (20, 30, 35, 45))
    unit = ADetailerUnit("face", ad_inpaint_only_masked_padding=8, ad_mask_blur=2)
    out, passes = detail_image(pipe, image, [unit], seed=7, prompt="a face", settings=SETTINGS, size=(64, 64),
                               detectors={"face": lambda im: [face]})
    assert len(passes) == 1
    dilated = passes[0]["mask"]
    assert dilated.getbbox() == (19, 29, 38, 48)  # 4×4 dilation: 1 px up/left, 2 px down/right (inclusive box)
    direct = pipe.inpaint(image, dilated, "a face", "", steps=2, sampler="Euler", cfg_scale=5.0, seed=7,
                          width=64, height=64, mask_blur=2, masked_content="original", denoising_strength=0.4,
                          inpaint_area="only_masked", padding=8).images[0]
    assert np.array_equal(np.asarray(out), np.asarray(direct))
    crop = expand_crop_region(get_crop_region_v2(blur_mask(dilated, 2, 2), 8), 64, 64, *image.size)
    a, b = np.asarray(image), np.asarray(out)
    outside = np.ones(a.shape[:2], bool)
    outside[crop[1]:crop[3], crop[0]:crop[2]] = False
    assert outside.sum() > 0.5 * outside.size
    assert np.array_equal(a[outside], b[outside])
    assert not np.array_equal(a[~outside], b[~outside])


def test_masks_run_in_order_with_their_seeds_and_prompts(pipe, monkeypatch):
    image = _picture()
    masks = [_box_mask(image.size, (10, 10, 20, 20)), _box_mask(image.size, (90, 50, 100, 60)),
             _box_mask(image.size, (60, 20, 70, 30))]
    calls = []
    real = type(pipe).inpaint

    def spy(self, img, mask, prompt, negative="", **kw):
        calls.append((img.copy(), prompt, negative, kw))
        return real(self, img, mask, prompt, negative, **kw)

    monkeypatch.setattr(type(pipe), "inpaint", spy)
    units = [ADetailerUnit("faces", ad_prompt="close-up, [PROMPT] [SEP] [SKIP] [SEP] hands", ad_negative_prompt="",
                           ad_inpaint_only_masked_padding=4, ad_use_steps=True, ad_steps=1),
             ADetailerUnit("one", ad_denoising_strength=0.3, ad_use_inpaint_width_height=True,
                           ad_inpaint_width=64, ad_inpaint_height=64)]
    detectors = {"faces": lambda im: masks, "one": lambda im: [masks[0]]}
    out, passes = detail_image(pipe, image, units, seed=100, subseed=5, prompt="a man", negative_prompt="bad",
                               settings=SETTINGS, size=(48, 48), detectors=detectors,
                               sort_by="Position (left to right)")
    # tab 1: masks sorted by x → (10, 60, 90); mask 1 skipped; tab 2 restarts the offsets
    assert [(c[1], c[3]["seed"], c[3]["subseed"]) for c in calls] == [
        ("close-up, a man", 100, 5), ("hands", 102, 7), ("a man", 100, 5)]
    assert [c[2] for c in calls] == ["bad"] * 3
    assert [c[3]["steps"] for c in calls] == [1, 1, 2]
    assert [(c[3]["width"], c[3]["height"], c[3]["denoising_strength"]) for c in calls] == [
        (48, 48, 0.4), (48, 48, 0.4), (64, 64, 0.3)]
    assert passes[1]["mask"].getbbox()[0] == 89
    # each pass starts from the previous one's result
    first = real(pipe, image, passes[0]["mask"], "close-up, a man", "bad", **{
        k: v for k, v in calls[0][3].items()}).images[0]
    assert np.array_equal(np.asarray(calls[1][0]), np.asarray(first))
    assert np.array_equal(np.asarray(calls[0][0]), np.asarray(image))


def test_prompt_parts():
    assert mask_prompts("", "main", 2) == ["main", "main"]
    assert mask_prompts("a [SEP] b, [PROMPT]", "main", 3) == ["a", "b, main", "b, main"]
    assert mask_prompts("x [SEP]  [SEP] y", "main", 3) == ["x", "main", "y"]


def test_technique_hooks_write_keys_and_replace_images(pipe):
    image = _picture(64, 64)
    face = _box_mask(image.size, (20, 20, 30, 30))
    technique = ADetailer([ADetailerUnit("face_yolov8n.pt"), ADetailerUnit("None")],
                          detectors={"face_yolov8n.pt": lambda im: [face]})
    job = types.SimpleNamespace(pipe=pipe, kind="txt2img", settings={**SETTINGS, "prompt": "p", "negative_prompt": ""},
                                extra={}, width=64, height=64, mask=None)
    technique.setup(job)
    assert list(job.extra)[0] == "ADetailer model" and job.extra["ADetailer version"] == "25.3.0"
    result = types.SimpleNamespace(images=[image], seeds=[7], subseeds=None)
    technique.postprocess(job, result)
    assert len(technique.passes) == 1 and result.images[0] is not image
    with pytest.raises(TechniqueError, match="tab 1: restore face"):
        ADetailer(ADetailerUnit(ad_restore_face=True)).setup(job)


def test_nothing_detected_leaves_the_image(pipe):
    image = _picture(64, 64)
    out, passes = detail_image(pipe, image, [ADetailerUnit("none")], seed=1, prompt="p", settings=SETTINGS,
                               detectors={"none": lambda im: []})
    assert out is image and passes == []


def test_pass_settings_take_the_main_job_and_switch_controlnet_off_unless_passthrough():
    from inpaintlab.adetailer import pass_settings

    main = {**SETTINGS, "soft_inpainting": True, "controlnet": "cn.safetensors", "control_weight": 0.5,
            "controlnets": ["unit"], "ad_model": "face.pt", "masked_content": "fill", "mask_mode": "not_masked"}
    s = pass_settings(main, ADetailerUnit(), (512, 768))
    assert s["soft_inpainting"] and "controlnet" not in s and "control_weight" not in s and "controlnets" not in s
    assert not any(k.startswith("ad_") for k in s)
    assert (s["masked_content"], s["mask_mode"], s["width"], s["height"], s["inpaint_area"]) == (
        "original", "masked", 512, 768, "only_masked")
    s = pass_settings(main, ADetailerUnit(ad_controlnet_model="Passthrough", ad_use_sampler=True,
                                          ad_sampler="Euler a", ad_scheduler="Karras"), (512, 512))
    assert s["controlnet"] == "cn.safetensors" and s["controlnets"] == ["unit"]
    assert (s["sampler"], s["scheduler"]) == ("Euler a", "Karras")
