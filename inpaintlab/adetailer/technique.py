"""ADetailer as a technique: after the picture is made, detect on it and inpaint each detection again.

Follows Bing-su/adetailer 25.3.0 (``AfterDetailerScript``): per output image and per tab, detect on the *current*
image, run the mask pipeline (`masks.pred_preprocessing`), then, sequentially per mask, a full A1111 img2img inpaint
of the current image: masked content "original", "Only masked" with padding 32, mask blur 4, denoising 0.4, seed
``image seed + mask index``, the tab's prompt (``[SEP]`` parts per mask, ``[PROMPT]`` = the image's prompt) and its
separate steps / CFG / sampler / size / noise multiplier / CLIP skip / checkpoint / VAE / ControlNet model when
set (`passes`). Every other setting comes from the main job. An inpaint job with an all-black mask turns ADetailer
off (no keys); with "Only masked", detections outside the job's mask are dropped. Not reproduced: MediaPipe
detectors and "restore face" (both refused with a one-line error).
"""
from __future__ import annotations

import dataclasses
import logging
import re
from pathlib import Path
from typing import Any, Callable, Mapping, Union

from PIL import Image, ImageChops

from ..pipeline.technique import Technique, TechniqueError
from . import rows  # noqa: F401  registers the ad_* settings rows
from .masks import Prediction, masks_from_images, pred_preprocessing, rectangle_masks
from .passes import (MATCH_MODES, PASS_TECHNIQUES, checkpoint_choice, checkpoint_label, controlnet_label,
                     controlnet_unit, dynamic_denoise_strength, matched_size, pass_pipeline, pass_settings,
                     pass_techniques, vae_choice)
from .unit import ADetailerUnit, unit_infotext

log = logging.getLogger(__name__)
DetectorLike = Union[str, Path, Callable[[Image.Image], Any], Any]
SKIP = re.compile(r"^\s*\[SKIP\]\s*$")


def yolo_prediction(detector: Any, image: Image.Image, confidence: float, **options: Any) -> Prediction | None:
    """ADetailer's ``ultralytics_predict`` (``options``: iou, imgsz … of `inpaintlab.detect.detect`)."""
    from ..detect import detect

    return adetailer_prediction(detect(detector, image, conf=confidence, **options), image.size)


def adetailer_prediction(found: Any, size: tuple[int, int]) -> Prediction | None:
    """Detections as ADetailer takes them: boxes in NMS order; a rectangle per box, or each seg mask resized
    (bicubic) from the letterboxed input size straight to the image size, padding and all. None when empty."""
    if not len(found):
        return None
    bboxes = found.boxes.tolist()
    if found.masks is None:
        masks = rectangle_masks(bboxes, size)
    else:  # Ultralytics 8.3 masks are 0/1 floats that ADetailer's to_pil_image scales to 0/255
        masks = [Image.fromarray((m * 255).numpy()).resize(size, Image.BICUBIC) for m in found.masks]
    return Prediction(bboxes, masks, found.scores.tolist())


def resolve_detector(name: str, detectors: Mapping[str, DetectorLike] | None) -> Callable[[Image.Image, float], Any]:
    """A function (image, confidence) → Prediction | None for the tab's ``ad_model``.

    ``detectors`` maps model names to a loaded Detector, a file path, or a Python callable ``f(image)`` returning a
    Prediction, a list of L masks, or None. A name not in it is read as a YOLOv8 file path.
    """
    from ..detect import Detector, load_detector

    target = (detectors or {}).get(name, name)
    if isinstance(target, (str, Path)):
        if str(target).startswith("mediapipe_"):
            raise TechniqueError(f"ADetailer model {target}: MediaPipe detectors are not available; use a YOLOv8 "
                                 "file or a Python detector")
        target = load_detector(target)
    if isinstance(target, Detector):
        detector = target
        return lambda image, conf: yolo_prediction(detector, image, conf)
    if callable(target):
        def call(image: Image.Image, conf: float) -> Prediction | None:
            out = target(image)
            if out is None or isinstance(out, Prediction):
                return out if out is None or len(out) else None
            pred = masks_from_images(list(out))
            return pred if len(pred) else None
        return call
    raise TechniqueError(f"ADetailer model {name}: expected a YOLOv8 file, a loaded Detector or a callable, got "
                         f"{type(target).__name__}")


def mask_prompts(ad_prompt: str, main_prompt: str, count: int) -> list[str]:
    """Per-mask prompts: ``[SEP]`` parts (mask j takes part min(j, n-1)); empty → the main prompt; ``[PROMPT]``
    replaced by it."""
    parts = re.split(r"\s*\[SEP\]\s*", ad_prompt)
    out = []
    for j in range(count):
        part = parts[min(j, len(parts) - 1)]
        out.append(part.replace("[PROMPT]", main_prompt) if part else main_prompt)
    return out


def unsupported(unit: ADetailerUnit) -> str | None:
    """What inpaintlab refuses in a tab (one line), or None."""
    if unit.ad_restore_face:
        return "restore face is not supported (inpaintlab has no face restorer); untick ad_restore_face"
    return None


def check_tab(unit: ADetailerUnit, controlnets: Mapping[str, Any] | None = None) -> None:
    """Refuse, before any work, a tab inpaintlab cannot run: TechniqueError (one line)."""
    problem = unsupported(unit)
    if problem:
        raise TechniqueError(problem)
    if unit.ad_controlnet_model not in ("None", "Passthrough"):
        controlnet_unit(unit, controlnets)  # the file is there and its preprocessor runs without a network


def main_mask(mask: Image.Image, *, invert: bool, resize_mode: int, size: tuple[int, int]) -> Image.Image:
    """The main job's inpaint mask as ADetailer reads it (``get_image_mask``): L (an RGBA mask's alpha is not
    used), inverted for "Inpaint not masked", resized to the main job's size with its resize mode."""
    from ..masking import resize_image

    m = mask.convert("L")
    if invert:
        m = ImageChops.invert(m)
    return resize_image(resize_mode, m, *size) if m.size != tuple(size) else m


def detail_image(pipe: Any, image: Image.Image, units: list[ADetailerUnit], *, seed: int, prompt: str,
                 negative_prompt: str = "", subseed: int | None = None, settings: Mapping[str, Any] | None = None,
                 size: tuple[int, int] | None = None, detectors: Mapping[str, DetectorLike] | None = None,
                 sort_by: str = "None", same_seed_for_each_tab: bool = False,
                 user_mask: Image.Image | None = None, dynamic_denoise_power: float = 0.0,
                 match_inpaint_bbox_size: str = "Off", controlnets: Mapping[str, Any] | None = None,
                 checkpoints: Mapping[str, Any] | None = None, vaes: Mapping[str, Any] | None = None,
                 techniques: list[Any] | None = None, seg_on_at_end: bool = False,
                 pipelines: dict | None = None) -> tuple[Image.Image, list[dict[str, Any]]]:
    """Run every active tab on one image; returns the final image and one record per inpaint pass run.

    settings: the main job's settings (sampler, steps, CFG, soft inpainting …); size: its width × height.
    user_mask: the main job's mask as `main_mask` reads it, for an "Only masked" inpaint main job (detections that
    miss it are dropped). dynamic_denoise_power, match_inpaint_bbox_size: ADetailer's global options of those
    names. controlnets / checkpoints / vaes: names → files or loaded models for the tabs' ControlNet model,
    checkpoint and VAE. techniques: the caller's techniques that act in every pass (`passes.pass_techniques`).
    pipelines: a cache of the tabs' checkpoint / VAE pipelines (kept by the ADetailer technique).
    """
    settings = dict(settings or {})
    size = size or (settings.get("width") or image.width, settings.get("height") or image.height)
    pipelines = {} if pipelines is None else pipelines
    passes: list[dict[str, Any]] = []
    for tab, unit in enumerate(u for u in units if u.active):
        try:
            check_tab(unit, controlnets)
        except TechniqueError as error:
            raise TechniqueError(f"ADetailer tab {tab + 1}: {error}") from None
        pred = resolve_detector(str(unit.ad_model), detectors)(image.convert("RGB"), unit.ad_confidence)
        if pred is None:  # ADetailer prints "nothing detected"; its infotext keys stay
            log.info("ADetailer tab %d (%s): nothing detected", tab + 1, unit.ad_model)
            continue
        masks, kept = pred_preprocessing(
            pred, image.size, min_ratio=unit.ad_mask_min_ratio, max_ratio=unit.ad_mask_max_ratio, k=unit.ad_mask_k,
            filter_method=unit.ad_mask_filter_method, sort_by=sort_by, dilate=unit.ad_dilate_erode,
            x_offset=unit.ad_x_offset, y_offset=unit.ad_y_offset, merge_mode=unit.ad_mask_merge_invert,
            user_mask=user_mask)
        if not masks:
            log.info("ADetailer tab %d (%s): no mask left after filtering", tab + 1, unit.ad_model)
            continue
        prompts = mask_prompts(unit.ad_prompt, prompt, len(masks))
        negatives = mask_prompts(unit.ad_negative_prompt, negative_prompt, len(masks))
        base = pass_settings(settings, unit, size, seg_on_at_end=seg_on_at_end)
        if unit.ad_controlnet_model not in ("None", "Passthrough"):
            base["controlnets"] = [controlnet_unit(unit, controlnets)]
        runner = pass_pipeline(pipe, unit, pipelines, checkpoints=checkpoints, vaes=vaes)
        for j, mask in enumerate(masks):
            if SKIP.match(prompts[j]):
                continue
            offset = 0 if same_seed_for_each_tab else j
            kw = dict(base, seed=seed + offset)
            if subseed is not None:
                kw["subseed"] = subseed + offset
            # fix_p2: box j of the filtered, sorted detections (after a merge or a dropped mask, not mask j's own)
            box = kept.bboxes[j] if j < len(kept) else []
            kw["denoising_strength"] = dynamic_denoise_strength(kw["denoising_strength"], dynamic_denoise_power, box,
                                                                image.size)
            if not unit.ad_use_inpaint_width_height:
                kw["width"], kw["height"] = matched_size(match_inpaint_bbox_size, kw["width"], kw["height"], box,
                                                         sdxl=pipe.config.family == "sdxl")
            result = runner.inpaint(image, mask, prompts[j], negatives[j], techniques=list(techniques or []), **kw)
            if not result.images:  # ADetailer stops the tab on an empty result
                break
            image = result.images[0]
            passes.append({"tab": tab, "mask": mask, "prompt": prompts[j], "negative_prompt": negatives[j], **kw})
    return image, passes


class ADetailer(Technique):
    """ADetailer's tabs after the main generation (postprocess hook); writes every ``ADetailer …`` key.

    units: the tabs in order; detectors: names → Detector / file / callable (see `resolve_detector`). ADetailer's
    global options: sort_by ("sort bounding boxes"), same_seed_for_each_tab, dynamic_denoise_power (0 = off),
    match_inpaint_bbox_size ("Off", "Free", "Strict (SDXL only)"). controlnets / checkpoints / vaes: names →
    files or loaded models for the tabs' ``ad_controlnet_model`` / ``ad_checkpoint`` / ``ad_vae`` (default: the
    file the name names, ``name [hash]`` read as ``name``). pass_techniques: names of the caller's techniques that
    also act in the passes (ADetailer's "script names" option; default dynamic thresholding and soft inpainting).
    """

    name = "ADetailer"

    def __init__(self, units: list[ADetailerUnit] | ADetailerUnit, *,
                 detectors: Mapping[str, DetectorLike] | None = None, sort_by: str = "None",
                 same_seed_for_each_tab: bool = False, dynamic_denoise_power: float = 0.0,
                 match_inpaint_bbox_size: str = "Off", controlnets: Mapping[str, Any] | None = None,
                 checkpoints: Mapping[str, Any] | None = None, vaes: Mapping[str, Any] | None = None,
                 pass_techniques: tuple[str, ...] = PASS_TECHNIQUES):
        if match_inpaint_bbox_size not in MATCH_MODES:
            raise TechniqueError(f"ADetailer match_inpaint_bbox_size {match_inpaint_bbox_size!r}: expected one of "
                                 f"{', '.join(MATCH_MODES)}")
        self.units = [units] if isinstance(units, ADetailerUnit) else list(units)
        self.detectors = dict(detectors or {})
        self.sort_by = sort_by
        self.same_seed_for_each_tab = same_seed_for_each_tab
        self.dynamic_denoise_power = float(dynamic_denoise_power)
        self.match_inpaint_bbox_size = match_inpaint_bbox_size
        self.controlnets, self.checkpoints, self.vaes = dict(controlnets or {}), dict(checkpoints or {}), dict(vaes or {})
        self.pass_technique_names = tuple(pass_techniques)
        self.passes: list[dict[str, Any]] = []
        self.disabled = False
        self._pipelines: dict = {}  # the tabs' checkpoint / VAE pipelines, loaded once

    @classmethod
    def for_job(cls, job: Any) -> ADetailer | None:
        """Tab 1 from the job's ``ad_*`` settings when ``ad_model`` names a detector, then the ``ad_more_tabs``."""
        names = [f.name for f in dataclasses.fields(ADetailerUnit)]
        units = list(rows.more_tabs(job.settings.get("ad_more_tabs")))
        if str(job.settings.get("ad_model", "None")) != "None":
            units.insert(0, ADetailerUnit(**{n: job.settings[n] for n in names if n in job.settings}))
        return cls(units) if any(u.active for u in units) else None

    def _main_mask(self, job: Any, size: tuple[int, int] | None = None) -> Image.Image | None:
        if job.kind != "inpaint" or job.mask is None:
            return None
        s = job.settings
        return main_mask(job.mask, invert=s.get("mask_mode") == "not_masked", resize_mode=s.get("resize_mode", 0),
                         size=size or job.mask.size)

    def setup(self, job: Any) -> None:
        """ADetailer's ``process``: off for an inpaint job whose mask is all black (no keys then); else check the
        tabs and write the infotext keys (A1111 orders keys by when they are set)."""
        mask = self._main_mask(job)  # (before the job's size is known: an all-black mask stays so when resized)
        self.disabled = mask is not None and mask.getbbox() is None
        if self.disabled:
            log.info("ADetailer: inpainting with an all-black mask, ADetailer is off")
            return
        for n, unit in enumerate(self.units):
            if unit.active:
                try:
                    check_tab(unit, self.controlnets)
                except TechniqueError as error:
                    raise TechniqueError(f"ADetailer tab {n + 1}: {error}") from None
        job.extra.update(unit_infotext([self._as_written(u) for u in self.units]))

    def _as_written(self, unit: ADetailerUnit) -> ADetailerUnit:
        """The tab with its files named as A1111 lists them (``stem [hash]`` ControlNets, checkpoint titles)."""
        changes: dict[str, Any] = {}
        if unit.active and unit.ad_controlnet_model not in self.controlnets:
            changes["ad_controlnet_model"] = controlnet_label(unit.ad_controlnet_model)
        if unit.active and checkpoint_choice(unit) and unit.ad_checkpoint not in self.checkpoints:
            changes["ad_checkpoint"] = checkpoint_label(unit.ad_checkpoint)
        if unit.active and vae_choice(unit) and Path(str(unit.ad_vae)).is_file():
            changes["ad_vae"] = Path(str(unit.ad_vae)).name
        return dataclasses.replace(unit, **changes) if changes else unit

    def postprocess(self, job: Any, result: Any) -> Any:
        self.passes = []
        if self.disabled:
            return result
        from ..guidance.pag import seg_active

        settings = dict(job.settings)
        size = (job.width or None, job.height or None) if getattr(job, "width", 0) else None
        only_masked = job.kind == "inpaint" and settings.get("inpaint_area") == "only_masked"
        user_mask = self._main_mask(job, (job.width, job.height)) if only_masked and size else None
        # SEG's hooks keep the on/off state of the main job's last denoiser call, made at step sampling_steps - 1
        seg_on = seg_active(max(getattr(job, "sampling_steps", 0) - 1, 0), int(settings.get("seg_start", 0)),
                            int(settings.get("seg_end", 150)), float(settings.get("seg_blur_sigma", 0.0) or 0.0))
        forwarded = pass_techniques(list(getattr(job, "outside", []) or []), self.pass_technique_names)
        for i, image in enumerate(result.images):
            subseeds = result.subseeds
            image, passes = detail_image(
                job.pipe, image, self.units, seed=result.seeds[i], subseed=subseeds[i] if subseeds else None,
                prompt=settings.get("prompt", ""), negative_prompt=settings.get("negative_prompt", ""),
                settings=settings, size=size, detectors=self.detectors, sort_by=self.sort_by,
                same_seed_for_each_tab=self.same_seed_for_each_tab, user_mask=user_mask,
                dynamic_denoise_power=self.dynamic_denoise_power, match_inpaint_bbox_size=self.match_inpaint_bbox_size,
                controlnets=self.controlnets, checkpoints=self.checkpoints, vaes=self.vaes, techniques=forwarded,
                seg_on_at_end=seg_on, pipelines=self._pipelines)
            result.images[i] = image
            self.passes.extend(passes)
        return result
