"""Segment Anything for inpainting masks: networks, prompted prediction, automatic masks and mask tools.

    model = inpaintlab.segment.load("sam_vit_b_01ec64.pth")        # SAM, HQ-SAM, MobileSAM, SAM 2 / 2.1
    masks = inpaintlab.segment.generate_masks(model, image)         # segment_anything's list of dicts
    colours = inpaintlab.segment.segment_map(masks)
    mask = inpaintlab.segment.select(masks, points=[(120, 80)])     # HxW uint8, 255 = repaint

    predictor = inpaintlab.segment.Predictor(model)
    predictor.set_image(image)
    masks, iou, low_res = predictor.predict(points=[[120, 80]], labels=[1])
"""
from .._lazy import lazy_package

# Imported on first use: the command line's parser (`cli`) needs none of the networks.
lazy_package(__name__, {
    "SegmentError": ".common", "generate_masks": ".generator", "inpaint_anything_params": ".generator",
    "detect_family": ".load", "load": ".load", "read_segment_file": ".load", "Predictor": ".predictor",
    "build_tiny_sam": ".tiny", "make_tiny_sam": ".tiny",
    **dict.fromkeys(("add_mask", "auto_resize", "colormap504", "erode_mask", "expand_mask", "feather_mask", "invert_mask",
                     "mask_from_prompt", "pad_image", "restrict_to_region", "segment_map", "select", "sort_masks",
                     "trim_mask"), ".masks"),
})

__all__ = ["Predictor", "SegmentError", "add_mask", "auto_resize", "build_tiny_sam", "colormap504", "detect_family",
           "erode_mask", "expand_mask", "feather_mask", "generate_masks", "inpaint_anything_params", "invert_mask",
           "load", "make_tiny_sam", "mask_from_prompt", "pad_image", "read_segment_file", "restrict_to_region",
           "segment_map", "select", "sort_masks", "trim_mask"]
