"""ADetailer (Bing-su/adetailer 25.3.0): detect faces, hands or people after generation and inpaint each one again.

    pipe.txt2img("a portrait", ad_model="face_yolov8n.pt")                        # tab 1 through its ad_* settings
    pipe.txt2img("a portrait", techniques=[ADetailer([ADetailerUnit("face_yolov8n.pt"),
                                                      ADetailerUnit("hand_yolov8n.pt")])])

`detail_image(pipe, image, units, seed=..., prompt=...)` runs the same passes on any image; `sam_detector(sam_file,
points=[(x, y)])` makes a Segment Anything prompt (or its automatic masks) a detector. A tab's ControlNet model,
checkpoint and VAE are files (or ``name [hash]`` as A1111 writes them, looked up in the working directory).

Its settings rows are in `rows` (no torch: the settings registry loads it with itself); everything else is imported on
first use (the technique imports the pipeline; the mask pipeline and SAM need numpy and PIL).
"""
from .._lazy import lazy_package

lazy_package(__name__, {
    "ADETAILER_VERSION": ".unit", "ADetailerUnit": ".unit", "unit_infotext": ".unit", "units_from_infotext": ".unit",
    "Prediction": ".masks", "pred_preprocessing": ".masks", "sam_detector": ".sam",
    **dict.fromkeys(("ADetailer", "detail_image", "mask_prompts", "pass_settings", "resolve_detector"), ".technique"),
})

__all__ = ["ADETAILER_VERSION", "ADetailerUnit", "Prediction", "pred_preprocessing", "sam_detector", "unit_infotext",
           "units_from_infotext", "ADetailer", "detail_image", "mask_prompts", "pass_settings", "resolve_detector"]
