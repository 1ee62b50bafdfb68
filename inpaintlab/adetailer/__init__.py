"""ADetailer (Bing-su/adetailer 25.3.0): detect faces, hands or people after generation and inpaint each one again.

    pipe.txt2img("a portrait", ad_model="face_yolov8n.pt")                        # tab 1 through its ad_* settings
    pipe.txt2img("a portrait", techniques=[ADetailer([ADetailerUnit("face_yolov8n.pt"),
                                                      ADetailerUnit("hand_yolov8n.pt")])])

`detail_image(pipe, image, units, seed=..., prompt=...)` runs the same passes on any image; `sam_detector(sam_file,
points=[(x, y)])` makes a Segment Anything prompt (or its automatic masks) a detector. A tab's ControlNet model,
checkpoint and VAE are files (or ``name [hash]`` as A1111 writes them, looked up in the working directory).
"""
from .unit import ADETAILER_VERSION, ADetailerUnit, unit_infotext, units_from_infotext

# Loaded on first use: the technique imports the pipeline, which imports the settings that register this package's
# rows (so `inpaintlab.settings` can import `adetailer.rows` while it initialises), and `rows` stays free of torch,
# numpy and PIL (the mask pipeline and SAM need them).
_LAZY = {"Prediction": "masks", "pred_preprocessing": "masks", "sam_detector": "sam",
         **{name: "technique" for name in ("ADetailer", "detail_image", "mask_prompts", "pass_settings",
                                           "resolve_detector")}}


def __getattr__(name: str):
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(f".{_LAZY[name]}", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = ["ADETAILER_VERSION", "ADetailerUnit", "unit_infotext", "units_from_infotext", *_LAZY]
