"""YOLOv8 detection and segmentation (the detectors ADetailer runs), read from Ultralytics files without Ultralytics.

    detector = load_detector("face_yolov8n.pt")
    found = detect(detector, image, conf=0.3)      # boxes, scores, classes, masks
"""
from .loader import Detector, DetectorError, config_from_state_dict, load_detector
from .model import YOLOConfig, YOLOv8
from .predict import Detections, detect, letterbox, letterbox_geometry

__all__ = ["Detections", "Detector", "DetectorError", "YOLOConfig", "YOLOv8", "config_from_state_dict", "detect",
           "letterbox", "letterbox_geometry", "load_detector"]
