"""ADetailer inside the pipeline: as an outside technique (two tabs, Python detectors) and as tab 1 through the
ad_* settings rows (keywords, CLI flags, infotext read-back) with the tiny random YOLOv8n file."""
import numpy as np
import pytest
from PIL import Image, ImageDraw

import inpaintlab
from inpaintlab import settings as registry
from inpaintlab.adetailer import ADetailer, ADetailerUnit, units_from_infotext
from inpaintlab.cli import main
from inpaintlab.detect.tiny import make_tiny_detector
from inpaintlab.masking.masks import blur_mask
from inpaintlab.infotext import parse_infotext, read_png_infotext, settings_from_infotext

BASE = {"steps": 2, "sampler": "Euler", "cfg_scale": 5.0, "seed": 11, "width": 64, "height": 64}


@pytest.fixture(scope="module")
def pipe(tiny_checkpoint):
    return inpaintlab.load(tiny_checkpoint, kernels="torch")


def _square(size, box):
    m = Image.new("L", size)
    ImageDraw.Draw(m).rectangle(box, fill=255)
    return m


def test_two_tabs_as_a_technique(pipe):
    plain = pipe.txt2img("a man", **BASE)
    units = [ADetailerUnit("face_yolov8n.pt", ad_inpaint_only_masked_padding=4),
             ADetailerUnit("hand_yolov8n.pt", ad_prompt="a hand", ad_denoising_strength=0.5)]
    face, hand = _square((64, 64), (8, 8, 17, 17)), _square((64, 64), (44, 40, 52, 50))
    technique = ADetailer(units, detectors={"face_yolov8n.pt": lambda im: [face],
                                            "hand_yolov8n.pt": lambda im: [hand]})
    result = pipe.txt2img("a man", **BASE, techniques=[technique])
    assert len(technique.passes) == 2 and [p["seed"] for p in technique.passes] == [11, 11]
    fields = parse_infotext(result.infotext)
    assert fields["ADetailer model 2nd"] == "hand_yolov8n.pt" and fields["ADetailer prompt 2nd"] == "a hand"
    assert fields["ADetailer version"] == "25.3.0"
    assert units_from_infotext(fields) == units
    a, b = np.asarray(plain.images[0]), np.asarray(result.images[0])
    # A1111's paste-back keeps every pixel outside the blurred masks
    touched = sum(np.asarray(blur_mask(p["mask"], 4, 4), dtype=int) for p in technique.passes) > 0
    assert 0 < touched.sum() < touched.size and np.array_equal(a[~touched], b[~touched])
    assert not np.array_equal(a[8:18, 8:18], b[8:18, 8:18])


def test_tab_one_through_settings_rows_and_infotext_read_back(pipe, tmp_path):
    detector = make_tiny_detector(tmp_path / "tiny-yolov8n.safetensors")
    rows = {"ad_model": str(detector), "ad_confidence": 0.05, "ad_denoising_strength": 0.3, "ad_dilate_erode": 8,
            "ad_mask_k": 1, "ad_inpaint_only_masked_padding": 16, "ad_use_steps": True, "ad_steps": 1}
    result = pipe.txt2img("a man", **BASE, **rows)
    plain = pipe.txt2img("a man", **BASE)
    assert not np.array_equal(np.asarray(plain.images[0]), np.asarray(result.images[0]))
    read = settings_from_infotext(result.infotext, strict=True)
    assert {k: read[k] for k in rows} == {**rows, "ad_model": "tiny-yolov8n.safetensors"}  # the file's name
    assert read["ad_mask_filter_method"] == "Area" and "ad_model_2nd" not in read


def test_rows_are_checked_and_on_the_command_line(pipe, tmp_path, tiny_checkpoint):
    with pytest.raises(ValueError, match="ad_confidence"):
        pipe.txt2img("a", **BASE, ad_confidence=2)
    assert registry.SETTINGS["ad_model"].default == "None" and not registry.SETTINGS["ad_model"].keyword
    detector = make_tiny_detector(tmp_path / "d.safetensors")
    out = tmp_path / "o"
    assert main(["txt2img", "--model", str(tiny_checkpoint), "--kernels", "torch", "--prompt", "a man", "--steps", "1",
                 "--sampler", "Euler", "--width", "64", "--height", "64", "--seed", "3", "--no-progress",
                 "--ad-model", str(detector), "--ad-confidence", "0.05", "--ad-mask-k", "1", "--out", str(out)]) == 0
    text = read_png_infotext(out / "00000-3.png")
    assert "ADetailer model: d.safetensors," in text and "ADetailer mask only top k: 1" in text


def test_sweep_axes_over_adetailer_settings():
    from inpaintlab.study.spec import load_spec

    spec = load_spec({"model": "m.safetensors", "image": "i.png", "mask": "m.png",
                      "base": {"ad_model": "face_yolov8n.pt", "ad_mask_merge_invert": "merge and invert"},
                      "x": {"ad_denoising_strength": [0.3, 0.5]}, "y": {"ad_dilate_erode": [4, -8]}})
    assert spec.x == ("ad_denoising_strength", [0.3, 0.5]) and spec.y == ("ad_dilate_erode", [4, -8])
    assert spec.base["ad_mask_merge_invert"] == "Merge and Invert"
    with pytest.raises(ValueError, match="ad_denoising_strength"):
        load_spec({"model": "m.safetensors", "image": "i.png", "mask": "m.png",
                   "x": {"ad_denoising_strength": [0.3, 1.5]}})
