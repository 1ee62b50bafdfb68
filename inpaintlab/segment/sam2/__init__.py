"""SAM 2 and SAM 2.1 (Hiera T / S / B+ / L) for single images: the network, its strict builder and the predictor.

    is_sam2(keys) -> bool                       SAM 2 / 2.1 keys? (`detect_sam2(sd)` gives family and size)
    build_sam2(state_dict) -> SAM2Model         strict load; `.family` "sam2" / "sam2.1", `.size`, `.image_size`
    SAM2Predictor(model).set_image(image); .predict(points, labels, box, mask_input, multimask, return_logits)
    make_tiny_sam2_file(path)                   tiny random weights in the official layout
"""
from .config import HIERA_SIZES, HieraConfig, Sam2Config, Sam2Error, detect_sam2, is_sam2
from .model import SAM2Model, build_sam2, build_sam2_from_config
from .predictor import SAM2Predictor
from .tiny import make_tiny_sam2_file, randomize_sam2, tiny_sam2_state_dict

__all__ = ["HIERA_SIZES", "HieraConfig", "SAM2Model", "SAM2Predictor", "Sam2Config", "Sam2Error", "build_sam2",
           "build_sam2_from_config", "detect_sam2", "is_sam2", "make_tiny_sam2_file", "randomize_sam2",
           "tiny_sam2_state_dict"]
