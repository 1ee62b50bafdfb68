"""ADetailer (Bing-su/adetailer 25.3.0): detect faces, hands or people after generation and inpaint each one again.

    from inpaintlab.adetailer import ADetailer, ADetailerUnit
    pipe.txt2img("a portrait", techniques=[ADetailer(ADetailerUnit("face_yolov8n.pt"))])

Without the pipeline hook, `detail_image(pipe, image, units, seed=..., prompt=...)` runs the same passes.
"""
from .masks import Prediction, pred_preprocessing
from .technique import ADetailer, detail_image, mask_prompts, pass_settings, resolve_detector
from .unit import ADETAILER_VERSION, ADetailerUnit, unit_infotext, units_from_infotext

__all__ = ["ADETAILER_VERSION", "ADetailer", "ADetailerUnit", "Prediction", "detail_image", "mask_prompts",
           "pass_settings", "pred_preprocessing", "resolve_detector", "unit_infotext", "units_from_infotext"]
