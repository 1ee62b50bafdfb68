"""ADetailer (Bing-su/adetailer 25.3.0): detect faces, hands or people after generation and inpaint each one again.

    pipe.txt2img("a portrait", ad_model="face_yolov8n.pt")                        # tab 1 through its ad_* settings
    pipe.txt2img("a portrait", techniques=[ADetailer([ADetailerUnit("face_yolov8n.pt"),
                                                      ADetailerUnit("hand_yolov8n.pt")])])

`detail_image(pipe, image, units, seed=..., prompt=...)` runs the same passes on any image.
"""
from .masks import Prediction, pred_preprocessing
from .unit import ADETAILER_VERSION, ADetailerUnit, unit_infotext, units_from_infotext

_TECHNIQUE = ("ADetailer", "detail_image", "mask_prompts", "pass_settings", "resolve_detector")


def __getattr__(name: str):
    # The technique imports the pipeline, which imports the settings that register this package's rows: loaded on
    # first use so that `inpaintlab.settings` can import `adetailer.rows` while it initialises.
    if name in _TECHNIQUE:
        from . import technique

        return getattr(technique, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = ["ADETAILER_VERSION", "ADetailerUnit", "Prediction", "pred_preprocessing", "unit_infotext",
           "units_from_infotext", *_TECHNIQUE]
