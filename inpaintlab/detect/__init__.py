"""YOLOv8 detection and segmentation (the detectors ADetailer runs), read from Ultralytics files without Ultralytics.

    detector = load_detector("face_yolov8n.pt")
    found = detect(detector, image, conf=0.3)      # boxes, scores, classes, masks
"""
from .._lazy import lazy_package

# Imported on first use: the command line's parser needs none of them.
lazy_package(__name__, {
    "Detector": ".loader", "DetectorError": ".loader", "config_from_state_dict": ".loader", "load_detector": ".loader",
    "YOLOConfig": ".model", "YOLOv8": ".model",
    **dict.fromkeys(("Detections", "detect", "letterbox", "letterbox_geometry"), ".predict"),
})

__all__ = ["Detections", "Detector", "DetectorError", "YOLOConfig", "YOLOv8", "config_from_state_dict", "detect",
           "letterbox", "letterbox_geometry", "load_detector"]
