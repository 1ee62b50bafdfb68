"""The names this module held before the pipeline became a package (`inpaintlab.pipeline`), for code that imports
them from here; `python -m inpaintlab.inpaint ...` still runs the command line."""
from .pipeline import Pipeline, PipelineConfig, Result, load
from .pipeline.conditioning import SDXL_CROP_TOP_LEFT, ScheduledConditioning, strip_comments
from .pipeline.images import image_to_tensor, tensor_to_image
from .pipeline.load import VERSION_TAG
from .techniques.controlnet import controlnet_units

__all__ = ["Pipeline", "PipelineConfig", "Result", "SDXL_CROP_TOP_LEFT", "ScheduledConditioning", "VERSION_TAG",
           "controlnet_units", "image_to_tensor", "load", "strip_comments", "tensor_to_image"]

if __name__ == "__main__":
    from .cli import main

    raise SystemExit(main())
