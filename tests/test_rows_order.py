"""The settings registry keeps its order (CLI help, sweep names, infotext reading all follow it) now that the rows live
in torch-free rows modules which `inpaintlab.settings` loads itself (`ROWS_MODULES`). The lists below were recorded
from the registry as the technique modules built it by importing each other (main at c7c4000, 147 rows).

A new rows module adds its rows after these: append it to `settings.ROWS_MODULES`; the rows recorded here keep their
relative order whatever is added.
"""
import json
import subprocess
import sys

from inpaintlab import settings as registry
from inpaintlab.replay import read_replay

ROWS = [
    "prompt", "negative_prompt", "steps", "sampler", "scheduler", "eta", "s_churn", "s_tmin", "s_tmax", "s_noise",
    "cfg_scale", "seed", "width", "height", "batch_size", "clip_skip", "rng_source", "subseed", "subseed_strength",
    "seed_resize_from", "ensd", "denoising_strength", "resize_mode", "mask_blur", "mask_mode", "masked_content",
    "inpaint_area", "padding", "fill_space", "inpainting_mask_weight", "token_merging_ratio_hr", "soft_inpainting",
    "schedule_bias", "preservation_strength", "transition_contrast_boost", "mask_influence", "difference_threshold",
    "difference_contrast", "differential_diffusion", "controlnet_processor_res", "controlnet_threshold_a",
    "controlnet_threshold_b", "controlnet_pixel_perfect", "controlnet", "controlnet_preprocessor", "control_weight",
    "control_mode", "guidance_start", "guidance_end", "initial_noise_multiplier", "img2img_extra_noise",
    "color_correction", "enable_hr", "hr_scale", "hr_resize_x", "hr_resize_y", "hr_upscaler", "hr_second_pass_steps",
    "hr_prompt", "hr_negative_prompt", "hr_sampler", "hr_scheduler", "hr_cfg", "upscaler_dir", "refiner_checkpoint",
    "refiner_switch_at", "refiner_switch_by_sample_steps", "hires_fix_refiner_pass", "ad_model", "ad_model_classes",
    "ad_tab_enable", "ad_prompt", "ad_negative_prompt", "ad_confidence", "ad_mask_filter_method", "ad_mask_k",
    "ad_mask_min_ratio", "ad_mask_max_ratio", "ad_x_offset", "ad_y_offset", "ad_dilate_erode", "ad_mask_merge_invert",
    "ad_mask_blur", "ad_denoising_strength", "ad_inpaint_only_masked", "ad_inpaint_only_masked_padding",
    "ad_use_inpaint_width_height", "ad_inpaint_width", "ad_inpaint_height", "ad_use_steps", "ad_steps",
    "ad_use_cfg_scale", "ad_cfg_scale", "ad_use_checkpoint", "ad_checkpoint", "ad_use_vae", "ad_vae", "ad_use_sampler",
    "ad_sampler", "ad_scheduler", "ad_use_noise_multiplier", "ad_noise_multiplier", "ad_use_clip_skip", "ad_clip_skip",
    "ad_restore_face", "ad_controlnet_model", "ad_controlnet_module", "ad_controlnet_weight",
    "ad_controlnet_guidance_start", "ad_controlnet_guidance_end", "ad_more_tabs", "s_min_uncond", "s_min_uncond_all",
    "skip_early_cond", "token_merging_ratio", "token_merging_ratio_img2img", "emphasis", "pad_cond_uncond",
    "pad_cond_uncond_v0", "sigma_min", "sigma_max", "rho", "beta_dist_alpha", "beta_dist_beta", "freeu_stages",
    "freeu_schedule", "freeu_version", "dynamic_thresholding", "mimic_scale", "threshold_percentile", "mimic_mode",
    "mimic_scale_min", "cfg_mode", "cfg_scale_min", "scheduler_value", "separate_feature_channels",
    "scaling_startpoint", "variability_measure", "interpolate_phi", "pag_scale", "pag_start", "pag_end", "pag_sanf",
    "seg_blur_sigma", "seg_start", "seg_end", "cfg_rescale",
]
INFOTEXT_KEYS = [
    "Model", "Model hash", "VAE", "VAE hash", "TI hashes", "Version", "Hashes", "Init image hash", "User", "X Type",
    "X Values", "Y Type", "Y Values", "Z Type", "Z Values", "Eta DDIM", "Lora hashes", "Hires schedule type",
    "ADetailer version", "PAG Active", "SEG Active",
]
CROSS_CHECKS = ["sampler and scheduler", "GPU noise needs CUDA", "one blend", "ControlNet guidance window"]
INFOTEXT_READERS = ["ADetailer tabs 2, 3 ...", "CFG Rescale spellings"]
ROWS_MODULES = (
    "inpaintlab.guidance.tome_rows", "inpaintlab.techniques.rows", "inpaintlab.techniques.controlnet_rows",
    "inpaintlab.techniques.noise_rows", "inpaintlab.techniques.color_rows", "inpaintlab.techniques.hires_rows",
    "inpaintlab.refiner.rows", "inpaintlab.adetailer.rows", "inpaintlab.guidance.rows",
)

# An infotext touching every rows module: the settings it replays come out in registry order.
TEXT = ("a cat <lora:x:0.5>\nNegative prompt: dog\nSteps: 12, Sampler: DPM++ 2M, Schedule type: Karras, CFG scale: 6, "
        "Seed: 3, Size: 512x768, Denoising strength: 0.6, Clip skip: 2, RNG: CPU, Mask blur: 8, "
        "Soft inpainting enabled: True, Soft inpainting schedule bias: 1.5, Noise multiplier: 0.9, Extra noise: 0.1, "
        "ControlNet 0: \"Module: canny, Model: cn [12345678], Weight: 0.8, Processor Res: 640, Threshold A: 90, "
        "Guidance Start: 0.1, Guidance End: 0.9, Pixel Perfect: True, Control Mode: Balanced\", "
        "ADetailer model: face_yolov8n.pt, ADetailer confidence: 0.4, "
        "FreeU Stages: \"[{\\\"backbone_factor\\\": 1.1}]\", Mimic scale: 5, Dynamic thresholding enabled: True, "
        "PAG Scale: 3, CFG Rescale: 0.5, NGMS: 2, Token merging ratio hr: 0.3, Hires upscale: 2, "
        "Hires upscaler: Latent, Refiner: sdxl_refiner [7440042bbd], Refiner switch at: 0.8, Lora hashes: \"x: 1234\", "
        "Version: v1.10.1")
TEXT_ORDER = [
    "prompt", "negative_prompt", "steps", "sampler", "scheduler", "cfg_scale", "seed", "width", "height", "clip_skip",
    "rng_source", "denoising_strength", "mask_blur", "mask_mode", "masked_content", "inpaint_area", "padding",
    "fill_space", "token_merging_ratio_hr", "soft_inpainting", "schedule_bias", "controlnet_processor_res",
    "controlnet_threshold_a", "controlnet_threshold_b", "controlnet_pixel_perfect", "controlnet",
    "controlnet_preprocessor", "control_weight", "control_mode", "guidance_start", "guidance_end",
    "initial_noise_multiplier", "img2img_extra_noise", "enable_hr", "hr_scale", "hr_upscaler", "refiner_checkpoint",
    "refiner_switch_at", "refiner_switch_by_sample_steps", "ad_model", "ad_confidence", "s_min_uncond", "freeu_stages",
    "dynamic_thresholding", "mimic_scale", "pag_scale", "cfg_rescale",
]


def _in_recorded(names, recorded):
    return [n for n in names if n in recorded]


def test_rows_keep_the_recorded_order():
    assert registry.ROWS_MODULES[:len(ROWS_MODULES)] == ROWS_MODULES
    assert _in_recorded(registry.SETTINGS, ROWS) == ROWS
    assert _in_recorded(registry.INFOTEXT_KEYS, INFOTEXT_KEYS) == INFOTEXT_KEYS
    assert _in_recorded(registry.CROSS_CHECKS, CROSS_CHECKS) == CROSS_CHECKS
    assert _in_recorded(registry.INFOTEXT_READERS, INFOTEXT_READERS) == INFOTEXT_READERS
    assert {"lora", "lyco"} <= registry.EXTRA_NETWORKS


def test_cli_flags_and_a_replay_follow_it():
    from inpaintlab.cli import build_parser

    subcommands = build_parser()._subparsers._group_actions[0].choices
    flags = [a.option_strings[0] for a in subcommands["txt2img"]._actions if a.option_strings]
    rows = [registry.SETTINGS[n] for n in registry.for_command("txt2img")]
    wanted = [f"{s.flag}-{part}" if s.parts else s.flag for s in rows for part in (s.parts or [None])]
    assert wanted[:3] == ["--prompt", "--negative-prompt", "--steps"]
    assert [f for f in flags if f in set(wanted)] == wanted
    replay = read_replay(TEXT)
    assert not replay.problems and replay.refused is None
    assert list(replay.settings) == TEXT_ORDER


def test_order_does_not_depend_on_what_is_imported_first():
    """A rows module or a technique imported before anything else still gives the one order: `import inpaintlab`
    loads the whole registry first."""
    for first in (*ROWS_MODULES, "inpaintlab.techniques.soft", "inpaintlab.settings"):
        code = f"import json, {first}; from inpaintlab import settings; print(json.dumps(list(settings.SETTINGS)))"
        out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
        assert json.loads(out) == list(registry.SETTINGS), first
