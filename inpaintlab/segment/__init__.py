"""Segment Anything for inpainting masks: networks, prompted prediction, automatic masks and mask tools.

    model = inpaintlab.segment.load("sam_vit_b_01ec64.pth")       # SAM, HQ-SAM, MobileSAM, SAM 2 / 2.1
    masks = inpaintlab.segment.generate_masks(model, image)        # segment_anything's list of dicts
    predictor = inpaintlab.segment.Predictor(model)
    predictor.set_image(image)
    masks, iou, low_res = predictor.predict(points=[[120, 80]], labels=[1])
"""
from .common import SegmentError
from .load import detect_family, load, read_segment_file
from .predictor import Predictor

__all__ = ["Predictor", "SegmentError", "detect_family", "load", "read_segment_file"]
