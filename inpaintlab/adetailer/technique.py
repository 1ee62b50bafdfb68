"""ADetailer as a technique: after the picture is made, detect on it and inpaint each detection again.

Follows Bing-su/adetailer 25.3.0 (``AfterDetailerScript``): per output image and per tab, detect on the *current*
image, run the mask pipeline (`masks.pred_preprocessing`), then, sequentially per mask, a full A1111 img2img inpaint
of the current image: masked content "original", "Only masked" with padding 32, mask blur 4, denoising 0.4, seed
``image seed + mask index``, the tab's prompt (``[SEP]`` parts per mask, ``[PROMPT]`` = the image's prompt) and its
separate steps / CFG / sampler / size when ticked. Every other setting comes from the main job.
"""
from __future__ import annotations

import dataclasses
import logging
import re
from pathlib import Path
from typing import Any, Callable, Mapping, Union

from PIL import Image

from .. import settings as registry
from ..pipeline.technique import Technique, TechniqueError
from . import rows  # noqa: F401  registers the ad_* settings rows
from .masks import Prediction, masks_from_images, pred_preprocessing, rectangle_masks
from .unit import SAME_SAMPLER, SAME_SCHEDULER, ADetailerUnit, unit_infotext

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
    if unit.ad_use_checkpoint or unit.ad_use_vae:
        return "a separate checkpoint or VAE per tab is not supported; run the tab with its own pipeline"
    if unit.ad_use_noise_multiplier:
        return "a separate noise multiplier is not supported (inpaintlab has no initial-noise multiplier)"
    if unit.ad_restore_face:
        return "restore face is not supported"
    if unit.ad_controlnet_model not in ("None", "Passthrough"):
        return f"ControlNet model {unit.ad_controlnet_model!r} in a tab is not supported (None or Passthrough)"
    return None


_CONTROLNET_EXTRA = ("controlnets", "controlnet_image", "controlnet_mask", "controlnet_lama")
_CONTROLNET = ("controlnet", "controlnet_preprocessor", "control_weight", "control_mode", "guidance_start",
               "guidance_end")


def pass_settings(main: Mapping[str, Any], unit: ADetailerUnit, size: tuple[int, int]) -> dict[str, Any]:
    """The inner inpaint job's keywords (ADetailer's ``get_i2i_p``), seed left to the caller."""
    inner = set(registry.for_command("inpaint")) - {"prompt", "negative_prompt"}
    s = {k: v for k, v in main.items() if k in inner and not k.startswith("ad_")}  # passes run no ADetailer
    if unit.ad_controlnet_model == "None":  # the main job's ControlNet units are switched off in the passes
        for k in _CONTROLNET:
            s.pop(k, None)
    else:  # Passthrough: the main job's units run unchanged, with their own images if they had any
        s.update({k: main[k] for k in _CONTROLNET_EXTRA if main.get(k) is not None})
    width, height = (unit.ad_inpaint_width, unit.ad_inpaint_height) if unit.ad_use_inpaint_width_height else size
    s.update(width=width, height=height, resize_mode=0, mask_mode="masked", mask_blur=unit.ad_mask_blur,
             masked_content="original", denoising_strength=unit.ad_denoising_strength, batch_size=1,
             inpaint_area="only_masked" if unit.ad_inpaint_only_masked else "whole",
             padding=unit.ad_inpaint_only_masked_padding)
    if unit.ad_use_steps:
        s["steps"] = unit.ad_steps
    if unit.ad_use_cfg_scale:
        s["cfg_scale"] = unit.ad_cfg_scale
    if unit.ad_use_clip_skip:
        s["clip_skip"] = unit.ad_clip_skip
    if unit.ad_use_sampler and unit.ad_sampler != SAME_SAMPLER:
        s["sampler"] = unit.ad_sampler
        if unit.ad_scheduler != SAME_SCHEDULER:
            s["scheduler"] = unit.ad_scheduler
    return s


def detail_image(pipe: Any, image: Image.Image, units: list[ADetailerUnit], *, seed: int, prompt: str,
                 negative_prompt: str = "", subseed: int | None = None, settings: Mapping[str, Any] | None = None,
                 size: tuple[int, int] | None = None, detectors: Mapping[str, DetectorLike] | None = None,
                 sort_by: str = "None", same_seed_for_each_tab: bool = False,
                 user_mask: Image.Image | None = None) -> tuple[Image.Image, list[dict[str, Any]]]:
    """Run every active tab on one image; returns the final image and one record per inpaint pass run.

    settings: the main job's settings (sampler, steps, CFG, soft inpainting …); size: its width × height.
    """
    settings = dict(settings or {})
    size = size or (settings.get("width") or image.width, settings.get("height") or image.height)
    passes: list[dict[str, Any]] = []
    for tab, unit in enumerate(u for u in units if u.active):
        problem = unsupported(unit)
        if problem:
            raise TechniqueError(f"ADetailer tab {tab + 1}: {problem}")
        pred = resolve_detector(str(unit.ad_model), detectors)(image.convert("RGB"), unit.ad_confidence)
        if pred is None:
            log.info("ADetailer tab %d (%s): nothing detected", tab + 1, unit.ad_model)
            continue
        masks, _ = pred_preprocessing(
            pred, image.size, min_ratio=unit.ad_mask_min_ratio, max_ratio=unit.ad_mask_max_ratio, k=unit.ad_mask_k,
            filter_method=unit.ad_mask_filter_method, sort_by=sort_by, dilate=unit.ad_dilate_erode,
            x_offset=unit.ad_x_offset, y_offset=unit.ad_y_offset, merge_mode=unit.ad_mask_merge_invert,
            user_mask=user_mask)
        prompts = mask_prompts(unit.ad_prompt, prompt, len(masks))
        negatives = mask_prompts(unit.ad_negative_prompt, negative_prompt, len(masks))
        base = pass_settings(settings, unit, size)
        for j, mask in enumerate(masks):
            if SKIP.match(prompts[j]):
                continue
            offset = 0 if same_seed_for_each_tab else j
            kw = dict(base, seed=seed + offset)
            if subseed is not None:
                kw["subseed"] = subseed + offset
            result = pipe.inpaint(image, mask, prompts[j], negatives[j], **kw)
            image = result.images[0]
            passes.append({"tab": tab, "mask": mask, "prompt": prompts[j], "negative_prompt": negatives[j], **kw})
    return image, passes


class ADetailer(Technique):
    """ADetailer's tabs after the main generation (postprocess hook); writes every ``ADetailer …`` key.

    units: the tabs in order; detectors: names → Detector / file / callable (see `resolve_detector`); sort_by: the
    global "sort bounding boxes" option; same_seed_for_each_tab: ADetailer's option of that name.
    """

    name = "ADetailer"

    def __init__(self, units: list[ADetailerUnit] | ADetailerUnit, *,
                 detectors: Mapping[str, DetectorLike] | None = None, sort_by: str = "None",
                 same_seed_for_each_tab: bool = False):
        self.units = [units] if isinstance(units, ADetailerUnit) else list(units)
        self.detectors = dict(detectors or {})
        self.sort_by = sort_by
        self.same_seed_for_each_tab = same_seed_for_each_tab
        self.passes: list[dict[str, Any]] = []

    @classmethod
    def for_job(cls, job: Any) -> ADetailer | None:
        """Tab 1 from the job's ``ad_*`` settings, when ``ad_model`` names a detector."""
        names = [f.name for f in dataclasses.fields(ADetailerUnit)]
        if str(job.settings.get("ad_model", "None")) == "None":
            return None
        return cls(ADetailerUnit(**{n: job.settings[n] for n in names if n in job.settings}))

    def setup(self, job: Any) -> None:
        """ADetailer's ``process``: check the tabs, write the infotext keys (A1111 orders keys by when they are set)."""
        for n, unit in enumerate(self.units):
            problem = unit.active and unsupported(unit)
            if problem:
                raise TechniqueError(f"ADetailer tab {n + 1}: {problem}")
        job.extra.update(unit_infotext(self.units))

    def postprocess(self, job: Any, result: Any) -> Any:
        settings = dict(job.settings)
        size = (job.width or None, job.height or None) if getattr(job, "width", 0) else None
        user_mask = job.mask if job.kind == "inpaint" and settings.get("inpaint_area") == "whole" else None
        self.passes = []
        for i, image in enumerate(result.images):
            subseeds = result.subseeds
            image, passes = detail_image(
                job.pipe, image, self.units, seed=result.seeds[i], subseed=subseeds[i] if subseeds else None,
                prompt=settings.get("prompt", ""), negative_prompt=settings.get("negative_prompt", ""),
                settings=settings, size=size, detectors=self.detectors, sort_by=self.sort_by,
                same_seed_for_each_tab=self.same_seed_for_each_tab, user_mask=user_mask)
            result.images[i] = image
            self.passes.extend(passes)
        return result
