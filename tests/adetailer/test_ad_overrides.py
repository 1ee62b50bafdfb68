"""ADetailer's per-tab overrides and global options (spec §5.1, §5.3, §5.4, §5.9): separate checkpoint, VAE, noise
multiplier and CLIP skip applied to the passes only; dynamic denoise and inpaint bbox size matching from box j of the
filtered detections; ADetailer off for an all-black main mask; detections outside an "Only masked" main job's mask
dropped; which of the main job's extensions act in the passes."""
import types

import numpy as np
import pytest
from PIL import Image, ImageDraw

import inpaintlab
from inpaintlab.adetailer import ADetailer, ADetailerUnit, Prediction, detail_image, pass_settings
from inpaintlab.adetailer.passes import dynamic_denoise_strength, matched_size, pass_pipeline, pass_techniques
from inpaintlab.checkpoint import short_hash
from inpaintlab.infotext import parse_infotext
from inpaintlab.pipeline import Technique
from inpaintlab.tiny import make_tiny_checkpoint, make_tiny_vae_file

SETTINGS = {"steps": 2, "sampler": "Euler", "cfg_scale": 5.0}
ARGS = dict(steps=2, sampler="Euler", cfg_scale=5.0, seed=4, width=64, height=64, mask_blur=4,
            masked_content="original", denoising_strength=0.4, inpaint_area="only_masked", padding=8)


@pytest.fixture(scope="module")
def pipe(tiny_checkpoint):
    return inpaintlab.load(tiny_checkpoint, kernels="torch")


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    folder = tmp_path_factory.mktemp("ad-overrides")
    return {"checkpoint": make_tiny_checkpoint(folder / "tiny-other.safetensors", seed=1),
            "vae": make_tiny_vae_file(folder / "tiny-vae.safetensors"), "folder": folder}


def _picture(w=96, h=80):
    return Image.fromarray(np.random.default_rng(5).integers(0, 256, (h, w, 3), dtype=np.uint8))


def _box(size, box):
    m = Image.new("L", size)
    ImageDraw.Draw(m).rectangle(box, fill=255)
    return m


def _one_pass(pipe, unit, image, face):
    out, passes = detail_image(pipe, image, [unit], seed=4, prompt="a face", settings=SETTINGS, size=(64, 64),
                               detectors={"face": lambda im: [face]})
    return out, passes[0]["mask"]


def test_separate_checkpoint_and_vae_for_the_passes_only(pipe, files, tiny_checkpoint, monkeypatch):
    image, face = _picture(), _box((96, 80), (30, 20, 49, 41))
    vae, config = pipe.vae, pipe.config
    monkeypatch.chdir(files["folder"])
    title = f"tiny-other.safetensors [{short_hash(files['checkpoint'])}]"  # A1111's checkpoint title, read by name
    out, mask = _one_pass(pipe, ADetailerUnit("face", ad_use_checkpoint=True, ad_checkpoint=title,
                                              ad_inpaint_only_masked_padding=8), image, face)
    other = inpaintlab.load(files["checkpoint"], kernels="torch")
    assert np.array_equal(np.asarray(out), np.asarray(other.inpaint(image, mask, "a face", **ARGS).images[0]))
    out, mask = _one_pass(pipe, ADetailerUnit("face", ad_use_vae=True, ad_vae="tiny-vae.safetensors",
                                              ad_inpaint_only_masked_padding=8), image, face)
    with_vae = inpaintlab.load(tiny_checkpoint, vae=files["vae"], kernels="torch")
    assert np.array_equal(np.asarray(out), np.asarray(with_vae.inpaint(image, mask, "a face", **ARGS).images[0]))
    assert pass_pipeline(pipe, ADetailerUnit(ad_use_vae=True, ad_vae="None"), {}) is pipe  # the checkpoint's own
    assert pipe.vae is vae and pipe.config == config  # the main pipeline is untouched
    job = types.SimpleNamespace(kind="txt2img", mask=None, settings={}, extra={})
    ADetailer(ADetailerUnit(ad_use_checkpoint=True, ad_checkpoint=str(files["checkpoint"]), ad_use_vae=True,
                            ad_vae=str(files["vae"]))).setup(job)
    assert {k: v for k, v in job.extra.items() if "checkpoint" in k or "VAE" in k} == {
        "ADetailer use separate checkpoint": True, "ADetailer checkpoint": title,
        "ADetailer use separate VAE": True, "ADetailer VAE": "tiny-vae.safetensors"}


def test_noise_multiplier_and_clip_skip_of_a_tab(pipe):
    main = {**SETTINGS, "initial_noise_multiplier": 0.9, "clip_skip": 1}
    s = pass_settings(main, ADetailerUnit(), (64, 64))
    assert (s["initial_noise_multiplier"], s["clip_skip"]) == (0.9, 1)  # A1111's global option: the main job's
    s = pass_settings(main, ADetailerUnit(ad_use_noise_multiplier=True, ad_noise_multiplier=0.6,
                                          ad_use_clip_skip=True, ad_clip_skip=2), (64, 64))
    assert (s["initial_noise_multiplier"], s["clip_skip"]) == (0.6, 2)
    image, face = _picture(), _box((96, 80), (30, 20, 49, 41))
    out, mask = _one_pass(pipe, ADetailerUnit("face", ad_use_noise_multiplier=True, ad_noise_multiplier=0.6,
                                              ad_inpaint_only_masked_padding=8), image, face)
    direct = pipe.inpaint(image, mask, "a face", initial_noise_multiplier=0.6, **ARGS).images[0]
    assert np.array_equal(np.asarray(out), np.asarray(direct))
    assert not np.array_equal(np.asarray(out), np.asarray(pipe.inpaint(image, mask, "a face", **ARGS).images[0]))


@pytest.mark.parametrize("field, value", [("ad_noise_multiplier", 0.4), ("ad_noise_multiplier", 1.6),
                                          ("ad_clip_skip", 13), ("ad_controlnet_weight", 1.5),
                                          ("ad_controlnet_guidance_end", -0.1)])
def test_adetailer_ranges(pipe, field, value):
    with pytest.raises(ValueError, match=field):
        ADetailerUnit(**{field: value})
    with pytest.raises(ValueError, match=field):
        pipe.txt2img("a", steps=1, width=64, height=64, ad_model="face.pt", **{field: value})


def test_dynamic_denoise_and_bbox_size_by_hand():
    assert dynamic_denoise_strength(0.4, 0.0, [0, 0, 50, 50], (100, 100)) == 0.4
    assert dynamic_denoise_strength(0.4, 2.0, [0, 0, 50, 50], (100, 100)) == pytest.approx(0.4 * 0.75 ** 2, abs=1e-15)
    assert dynamic_denoise_strength(0.4, 1.0, [], (100, 100)) == 0.4
    assert matched_size("Off", 512, 512, [0, 0, 30, 20], sdxl=True) == (512, 512)
    assert matched_size("Free", 512, 768, [0, 0, 30, 20], sdxl=False) == (768, 512)  # 768 / 1.5
    assert matched_size("Free", 512, 512, [0, 0, 20, 30], sdxl=False) == (344, 512)  # 341.33 rounded up to ×8
    assert matched_size("Strict (SDXL only)", 1024, 1024, [0, 0, 300, 200], sdxl=True) == (1216, 832)
    assert matched_size("Strict (SDXL only)", 1024, 1024, [0, 0, 200, 600], sdxl=True) == (640, 1536)
    assert matched_size("Strict (SDXL only)", 1024, 1024, [0, 0, 300, 200], sdxl=False) == (1024, 1024)
    assert matched_size("Strict (SDXL only)", 1024, 1024, [0, 0, 1600, 100], sdxl=True) == (1024, 1024)  # none fits


class FakePipe:
    """Records the passes' keywords; returns the image unchanged."""

    config = types.SimpleNamespace(family="sd1", vae_name=None)

    def __init__(self):
        self.calls = []

    def inpaint(self, image, mask, prompt, negative="", **kw):
        self.calls.append((mask, kw))
        return types.SimpleNamespace(images=[image.copy()])


def test_box_j_drives_strength_and_size():
    image = Image.new("RGB", (100, 100))
    boxes = [[0, 0, 50, 50], [60, 60, 80, 90]]
    pred = Prediction(boxes, [_box((100, 100), b) for b in boxes], [0.5, 0.9])
    fake = FakePipe()
    detail_image(fake, image, [ADetailerUnit("d", ad_mask_merge_invert="Merge")], seed=1, prompt="p",
                 settings=SETTINGS, size=(512, 512), detectors={"d": lambda im: pred}, dynamic_denoise_power=1.0,
                 match_inpaint_bbox_size="Free", sort_by="Area (large to small)")
    # one merged mask, paired with box 0 of the sorted detections (the larger one)
    assert len(fake.calls) == 1
    kw = fake.calls[0][1]
    assert kw["denoising_strength"] == pytest.approx(0.4 * 0.75, abs=1e-15) and (kw["width"], kw["height"]) == (
        512, 512)
    fake = FakePipe()
    detail_image(fake, image, [ADetailerUnit("d", ad_use_inpaint_width_height=True, ad_inpaint_width=256,
                                             ad_inpaint_height=128)], seed=1, prompt="p", settings=SETTINGS,
                 size=(512, 512), detectors={"d": lambda im: pred}, match_inpaint_bbox_size="Free")
    assert [(kw["width"], kw["height"]) for _, kw in fake.calls] == [(256, 128)] * 2  # fixed sizes win


def _job(kind, mask, **settings):
    return types.SimpleNamespace(kind=kind, mask=mask, extra={}, width=100, height=100, step=1, outside=[],
                                 settings={**SETTINGS, "prompt": "p", "negative_prompt": "", "mask_mode": "masked",
                                           "resize_mode": 0, **settings})


def test_all_black_main_mask_turns_adetailer_off_and_only_masked_filters():
    image = Image.new("RGB", (100, 100), (40, 80, 120))
    a, b = _box((100, 100), (10, 10, 20, 20)), _box((100, 100), (60, 60, 70, 70))
    technique = ADetailer(ADetailerUnit("d"), detectors={"d": lambda im: [a, b]})
    result = types.SimpleNamespace(images=[image], seeds=[3], subseeds=None)
    black = Image.new("L", (100, 100))
    job = _job("inpaint", black, inpaint_area="only_masked")
    job.pipe = FakePipe()
    technique.setup(job)
    technique.postprocess(job, result)
    assert job.extra == {} and job.pipe.calls == []  # no keys, no detection
    job = _job("inpaint", black, inpaint_area="whole", mask_mode="not_masked")  # the inverted mask is all white
    job.pipe = FakePipe()
    technique.setup(job)
    technique.postprocess(job, result)
    assert "ADetailer model" in job.extra and len(job.pipe.calls) == 2
    user = _box((100, 100), (0, 0, 30, 30))  # meets a only
    for area, count in (("only_masked", 1), ("whole", 2)):
        job = _job("inpaint", user, inpaint_area=area)
        job.pipe = FakePipe()
        technique.setup(job)
        technique.postprocess(job, result)
        assert len(job.pipe.calls) == count
    job = _job("inpaint", user, inpaint_area="only_masked")
    job.pipe = FakePipe()
    ADetailer(ADetailerUnit("d"), detectors={"d": lambda im: [b]}).postprocess(job, result)
    assert job.pipe.calls == []  # nothing within the main mask: no pass


def test_which_extensions_act_in_the_passes():
    main = {**SETTINGS, "freeu_stages": "[...]", "pag_scale": 3.0, "cfg_rescale": 0.7, "dynamic_thresholding": True,
            "mimic_scale": 5.0, "soft_inpainting": True, "seg_blur_sigma": 11.0, "seg_start": 2, "seg_end": 10}
    s = pass_settings(main, ADetailerUnit(), (64, 64), seg_on_at_end=True)
    assert not {"freeu_stages", "pag_scale", "cfg_rescale"} & set(s)
    assert s["dynamic_thresholding"] and s["mimic_scale"] == 5.0 and s["soft_inpainting"]
    assert (s["seg_blur_sigma"], s["seg_start"], s["seg_end"]) == (11.0, 0, 150)  # leftover hooks: every step
    assert "seg_blur_sigma" not in pass_settings(main, ADetailerUnit(), (64, 64), seg_on_at_end=False)


class Marker(Technique):
    def __init__(self, name):
        self.name, self.kinds = name, []

    def setup(self, job):
        self.kinds.append(job.kind)


def test_callers_techniques_in_the_passes(pipe):
    face = _box((64, 64), (20, 20, 30, 30))
    dt, freeu, own = Marker("dynamic thresholding"), Marker("FreeU"), Marker("my technique")
    technique = ADetailer(ADetailerUnit("face"), detectors={"face": lambda im: [face]})
    result = pipe.txt2img("a man", steps=1, sampler="Euler", width=64, height=64, seed=2,
                          techniques=[technique, dt, freeu, own])
    assert dt.kinds == ["txt2img", "inpaint"] and freeu.kinds == own.kinds == ["txt2img"]
    assert "ADetailer model" in parse_infotext(result.infotext)
    soft, other = Marker("soft inpainting"), Marker("other")
    assert pass_techniques([technique, dt, soft, freeu, own, other]) == [dt, soft]
    assert pass_techniques([technique, dt, own, other], ("my technique",)) == [own]  # never ADetailer itself
