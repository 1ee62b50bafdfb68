"""ADetailer's infotext keys: written as its extra_params writes them (order, suffixes, conditional keys), read back."""
import pytest

from inpaintlab.adetailer import ADetailerUnit, unit_infotext, units_from_infotext
from inpaintlab.adetailer.unit import ordinal
from inpaintlab.infotext import build_infotext, parse_infotext


def test_two_default_tabs_match_the_spec_example():
    keys = unit_infotext([ADetailerUnit("face_yolov8n.pt"), ADetailerUnit("hand_yolov8n.pt")])
    text = ", ".join(f"{k}: {v}" for k, v in keys.items())
    assert text == (
        "ADetailer model: face_yolov8n.pt, ADetailer confidence: 0.3, ADetailer dilate erode: 4, ADetailer mask blur: 4, "
        "ADetailer denoising strength: 0.4, ADetailer inpaint only masked: True, ADetailer inpaint padding: 32, "
        "ADetailer model 2nd: hand_yolov8n.pt, ADetailer confidence 2nd: 0.3, ADetailer dilate erode 2nd: 4, "
        "ADetailer mask blur 2nd: 4, ADetailer denoising strength 2nd: 0.4, ADetailer inpaint only masked 2nd: True, "
        "ADetailer inpaint padding 2nd: 32, ADetailer version: 25.3.0")


def test_inactive_tabs_write_nothing():
    assert unit_infotext([ADetailerUnit("None")]) == {}
    keys = unit_infotext([ADetailerUnit("None"), ADetailerUnit("hand_yolov8n.pt", ad_tab_enable=False),
                          ADetailerUnit("person_yolov8n-seg.pt")])
    assert keys["ADetailer model"] == "person_yolov8n-seg.pt" and "ADetailer model 2nd" not in keys


def test_conditional_keys_and_float_formatting():
    unit = ADetailerUnit("face_yolov8n.pt", ad_prompt="a smiling face, [PROMPT]", ad_mask_k=2,
                         ad_mask_filter_method="Confidence", ad_x_offset=3, ad_mask_merge_invert="Merge",
                         ad_inpaint_only_masked=False, ad_use_steps=True, ad_steps=12, ad_use_cfg_scale=True,
                         ad_cfg_scale=5, ad_use_sampler=True, ad_sampler="Euler a", ad_controlnet_model="Passthrough")
    keys = unit_infotext([unit])
    assert list(keys) == [
        "ADetailer model", "ADetailer prompt", "ADetailer confidence", "ADetailer method to decide top k masks",
        "ADetailer mask only top k", "ADetailer x offset", "ADetailer dilate erode", "ADetailer mask merge invert",
        "ADetailer mask blur", "ADetailer denoising strength", "ADetailer inpaint only masked",
        "ADetailer use separate steps", "ADetailer steps", "ADetailer use separate CFG scale", "ADetailer CFG scale",
        "ADetailer use separate sampler", "ADetailer sampler", "ADetailer ControlNet model", "ADetailer version"]
    assert str(keys["ADetailer CFG scale"]) == "5.0" and str(keys["ADetailer steps"]) == "12"


def test_round_trip_through_a_png_infotext():
    units = [ADetailerUnit("face_yolov8n.pt", ad_prompt="detailed face, [PROMPT] [SEP] second: face",
                           ad_negative_prompt="blurry", ad_denoising_strength=0.35, ad_dilate_erode=-8,
                           ad_mask_min_ratio=0.01, ad_mask_max_ratio=0.5, ad_y_offset=-4,
                           ad_mask_merge_invert="Merge and Invert", ad_use_inpaint_width_height=True,
                           ad_inpaint_width=768, ad_inpaint_height=640, ad_use_clip_skip=True, ad_clip_skip=2,
                           ad_use_sampler=True, ad_sampler="DPM++ SDE", ad_scheduler="Karras"),
             ADetailerUnit("hand_yolov8n.pt", ad_confidence=0.55, ad_mask_k=1, ad_inpaint_only_masked_padding=48)]
    text = build_infotext("a portrait", "", {"Steps": 20, "Seed": 1}, unit_infotext(units))
    fields = parse_infotext(text)
    assert fields["ADetailer version"] == "25.3.0"
    assert units_from_infotext(fields) == units


def test_legacy_key_names_are_read():
    fields = {"ADetailer model": "face_yolov8n.pt", "ADetailer dilate/erode": "8",
              "ADetailer mask merge/invert": "Merge", "ADetailer mask only top k largest": "2",
              "ADetailer use inpaint width/height": "True", "ADetailer inpaint width": "640",
              "ADetailer inpaint height": "768"}
    (unit,) = units_from_infotext(fields)
    assert (unit.ad_dilate_erode, unit.ad_mask_merge_invert, unit.ad_mask_k, unit.ad_mask_filter_method) == (
        8, "Merge", 2, "Area")
    assert unit.ad_use_inpaint_width_height and (unit.ad_inpaint_width, unit.ad_inpaint_height) == (640, 768)


def test_ordinals_and_bad_values():
    assert [ordinal(n) for n in (1, 2, 3, 4, 11, 12, 13, 21, 22)] == [
        "1st", "2nd", "3rd", "4th", "11th", "12th", "13th", "21st", "22nd"]
    with pytest.raises(ValueError, match="ad_confidence"):
        ADetailerUnit(ad_confidence=1.5)
    with pytest.raises(ValueError, match="ad_mask_merge_invert"):
        ADetailerUnit(ad_mask_merge_invert="Union")
