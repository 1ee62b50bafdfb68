"""The settings rows of the guidance techniques (technique rows: keywords of `txt2img` / `inpaint` through
``**settings``, CLI flags, infotext keys read back by ``--from-png``, sweep axes), named and keyed as A1111 and the
extensions write them. Defaults are the "off" values; a technique runs when its row differs from them."""
from __future__ import annotations

from typing import Any, Callable

from ..clip.conditioning import EMPHASIS_MODES
from ..settings import INFOTEXT_READERS, Setting, register, register_infotext_key
from .dynamic_thresholding import MEASURES, SCALE_MODES, STARTPOINTS


def _between(low: float, high: float) -> Callable[[Any], str | None]:
    return lambda v: None if low <= v <= high else f"must be in [{low:g}, {high:g}]"


def _freeu_stages(text: str) -> str | None:
    from .freeu import FreeUSettings

    if not text:
        return None
    try:
        FreeUSettings.from_infotext(text)
    except ValueError as e:
        return str(e)
    return None


_DT = "dynamic thresholding: "
ROWS = (
    # A1111's own CFG options
    Setting("s_min_uncond", float, 0.0, "NGMS: skip the negative prompt on odd calls below this sigma (0-15)",
            infotext="NGMS", check=_between(0, 15), example=14.0, keyword=False),
    Setting("s_min_uncond_all", bool, False, "NGMS on every call, not only odd ones", infotext="NGMS all steps",
            keyword=False),
    Setting("skip_early_cond", float, 0.0, "Skip Early CFG: no negative prompt for this fraction of the calls (0-1)",
            infotext="Skip Early CFG", check=_between(0, 1), example=0.2, keyword=False),
    Setting("token_merging_ratio", float, 0.0, "token merging ratio (tomesd, A1111's arguments; 0-0.9)",
            infotext="Token merging ratio", check=_between(0, 0.9), example=0.5, keyword=False),
    Setting("token_merging_ratio_img2img", float, 0.0, "token merging ratio for img2img/inpaint when "
            "token_merging_ratio is 0 (0-0.9)", check=_between(0, 0.9), keyword=False),
    Setting("emphasis", str, "Original", "emphasis mode: how (word:1.2) weights act", infotext="Emphasis",
            choices=EMPHASIS_MODES, keyword=False),
    Setting("pad_cond_uncond", bool, False, "pad prompt/negative prompt to one length (one UNet batch)",
            infotext="Pad conds", keyword=False),
    Setting("pad_cond_uncond_v0", bool, False, "pad prompt/negative prompt, v0 (last token / truncation)",
            infotext="Pad conds v0", keyword=False),
    # A1111's schedule overrides (Sampler parameters); 0 = the model's value / the scheduler's default
    Setting("sigma_min", float, 0.0, "schedule min sigma for scheduler-built schedules (0: the model's)",
            infotext="Schedule min sigma", check=lambda v: None if v >= 0 else "must be >= 0", example=0.1,
            keyword=False),
    Setting("sigma_max", float, 0.0, "schedule max sigma for scheduler-built schedules (0: the model's)",
            infotext="Schedule max sigma", check=lambda v: None if v >= 0 else "must be >= 0", example=10.0,
            keyword=False),
    Setting("rho", float, 0.0, "schedule rho for Karras / Polyexponential (0: their default)", infotext="Schedule rho",
            check=lambda v: None if v >= 0 else "must be >= 0", keyword=False),
    Setting("beta_dist_alpha", float, 0.6, "Beta schedule alpha (0.01-1)", infotext="Beta schedule alpha",
            check=_between(0.01, 1), keyword=False),
    Setting("beta_dist_beta", float, 0.6, "Beta schedule beta (0.01-1)", infotext="Beta schedule beta",
            check=_between(0.01, 1), keyword=False),
    # sd-webui-freeu
    Setting("freeu_stages", str, "", "FreeU stages as the extension's JSON list (empty: FreeU off)",
            infotext="FreeU Stages", check=_freeu_stages,
            example='[{"backbone_factor": 1.1, "skip_factor": 0.6}, {"backbone_factor": 1.2, "skip_factor": 0.4}]',
            keyword=False),
    Setting("freeu_schedule", str, "0.0, 1.0, 0.0", "FreeU schedule 'start, stop, smoothness'",
            infotext="FreeU Schedule", example="0.0, 0.5, 0.0", keyword=False),
    Setting("freeu_version", str, "2", "FreeU version", infotext="FreeU Version", choices=("1", "2"), example="1",
            keyword=False),
    # sd-dynamic-thresholding
    Setting("dynamic_thresholding", bool, False, "dynamic thresholding (CFG scale fix)",
            infotext="Dynamic thresholding enabled", example=True, keyword=False),
    Setting("mimic_scale", float, 7.0, _DT + "mimic CFG scale", infotext="Mimic scale", example=5.5, keyword=False),
    Setting("threshold_percentile", float, 100.0, _DT + "top percentile", infotext="Threshold percentile",
            check=_between(0, 100), example=99.0, keyword=False),
    Setting("mimic_mode", str, "Constant", _DT + "mimic scale schedule", infotext="Mimic mode", choices=SCALE_MODES,
            example="Linear Down", keyword=False),
    Setting("mimic_scale_min", float, 0.0, _DT + "mimic scale minimum", infotext="Mimic scale minimum", example=1.0,
            keyword=False),
    Setting("cfg_mode", str, "Constant", _DT + "CFG scale schedule", infotext="CFG mode", choices=SCALE_MODES,
            example="Power Up", keyword=False),
    Setting("cfg_scale_min", float, 0.0, _DT + "CFG scale minimum", infotext="CFG scale minimum", example=2.0,
            keyword=False),
    Setting("scheduler_value", float, 4.0, _DT + "scheduler value (power, repeats)", infotext="Scheduler value",
            example=2.0, keyword=False),
    Setting("separate_feature_channels", bool, True, _DT + "per-channel statistics",
            infotext="Separate Feature Channels", example=False, keyword=False),
    Setting("scaling_startpoint", str, "MEAN", _DT + "scaling startpoint", infotext="Scaling Startpoint",
            choices=STARTPOINTS, example="ZERO", keyword=False),
    Setting("variability_measure", str, "AD", _DT + "variability measure", infotext="Variability Measure",
            choices=MEASURES, example="STD", keyword=False),
    Setting("interpolate_phi", float, 1.0, _DT + "blend with plain CFG (1: none)", infotext="Interpolate Phi",
            check=_between(0, 1), example=0.7, keyword=False),
    # sd-webui-incantations
    Setting("pag_scale", float, 0.0, "PAG scale (0: off; 0-20)", infotext="PAG Scale", check=_between(0, 20),
            example=3.0, keyword=False),
    Setting("pag_start", int, 0, "PAG first sampling step", infotext="PAG Start Step", example=1, keyword=False),
    Setting("pag_end", int, 150, "PAG last sampling step", infotext="PAG End Step", example=100, keyword=False),
    Setting("pag_sanf", bool, False, "PAG saliency-adaptive noise fusion", infotext="PAG SANF", example=True,
            keyword=False),
    Setting("seg_blur_sigma", float, 0.0, "SEG blur sigma, log2 (0: off; 11: infinite)", infotext="SEG Blur Sigma",
            check=_between(0, 11), example=11.0, keyword=False),
    Setting("seg_start", int, 0, "SEG first sampling step", infotext="SEG Start Step", example=1, keyword=False),
    Setting("seg_end", int, 150, "SEG last sampling step", infotext="SEG End Step", example=100, keyword=False),
    # CFG_Rescale_webui
    Setting("cfg_rescale", float, 0.0, "CFG rescale phi (0: off; 0-1)", infotext="CFG Rescale", check=_between(0, 1),
            example=0.7, keyword=False),
)


# Older spellings of `CFG Rescale` (A1111's cfg-rescale branch and neutral-prompt 2023 wrote `φ`, neutral-prompt
# writes `phi`), read as CFG_Rescale_webui's paste reads them: only when `CFG Rescale` itself is absent, and `phi`
# (pasted after `φ`) wins when both are there. Written back as `CFG Rescale`.
RESCALE_SPELLINGS = ("CFG Rescale φ", "CFG Rescale phi")


def read_cfg_rescale_spellings(fields: dict[str, str]) -> tuple[list[str], dict[str, Any], list[str]]:
    """A whole-infotext reader: (the spellings present, {"cfg_rescale": φ} or {}, problems)."""
    present = [key for key in RESCALE_SPELLINGS if key in fields]
    if not present or "CFG Rescale" in fields:
        return present, {}, []  # `CFG Rescale` is read by its row; the other spellings are then ignored, as there
    key = present[-1]
    try:
        value = float(fields[key])
    except ValueError:
        return present, {}, [f"{key}: {fields[key]}: not a number"]
    problem = _between(0, 1)(value)
    if problem:
        return present, {}, [f"{key}: {fields[key]}: {problem}"]
    return [key] + [k for k in present if k != key], {"cfg_rescale": value}, []


def register_rows() -> None:
    for row in ROWS:
        register(row)
    INFOTEXT_READERS["CFG Rescale spellings"] = read_cfg_rescale_spellings
    # Written with the rows above; their presence is implied by the rows' values.
    for key in ("PAG Active", "SEG Active"):
        register_infotext_key(key)
