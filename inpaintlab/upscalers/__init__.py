"""Image upscaler networks from raw files, run the way A1111 v1.10 runs them."""
from .errors import UpscalerError
from .load import UpscalerModel, canonical_state_dict, detect_architecture, load

__all__ = ["UpscalerError", "UpscalerModel", "canonical_state_dict", "detect_architecture", "load"]
