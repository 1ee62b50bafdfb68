"""Ultralytics 8.4.190 as a test oracle: offline, quiet, with the torchvision stand-in it needs to import."""
import os

import cv2
import PIL.Image
import pytest
import torch

from inpaintlab.detect.tiny import randomise_

# Importing Ultralytics replaces PIL.Image.open, torch.save and cv2.imread/imwrite/imshow process-wide (its "patches");
# later tests in the same run must see the originals, so they are put back after every module here.
_ORIGINALS = ((PIL.Image, "open", PIL.Image.open), (torch, "save", torch.save), (cv2, "imread", cv2.imread),
              (cv2, "imwrite", cv2.imwrite), (cv2, "imshow", cv2.imshow))


def _restore():
    for owner, name, original in _ORIGINALS:
        setattr(owner, name, original)


@pytest.fixture(autouse=True, scope="module")
def _undo_ultralytics_patches():
    yield
    _restore()



def _ultralytics():
    os.environ["YOLO_OFFLINE"] = "1"  # no network checks, downloads or analytics
    os.environ["YOLO_VERBOSE"] = "False"
    from shims import use_torchvision_shim
    use_torchvision_shim()
    try:
        import ultralytics
    except ImportError as error:
        pytest.skip(f"ultralytics oracle not installed: {error}")
    from ultralytics.utils import SETTINGS
    SETTINGS.update({"sync": False})
    return ultralytics


@pytest.fixture(scope="session")
def ultralytics_files(tmp_path_factory):
    """{"det": path, "seg": path}: random-weight YOLOv8n (2 classes) saved by Ultralytics' own ``YOLO.save``."""
    _ultralytics()
    from ultralytics import YOLO
    from ultralytics.nn.tasks import DetectionModel, SegmentationModel
    out = tmp_path_factory.mktemp("yolo")
    paths = {}
    for kind, cls, yaml, seed in (("det", DetectionModel, "yolov8n.yaml", 1), ("seg", SegmentationModel,
                                                                              "yolov8n-seg.yaml", 2)):
        wrapper = YOLO(yaml, task="detect" if kind == "det" else "segment", verbose=False)
        args = wrapper.model.args  # the task and defaults Ultralytics stores with the model it built
        wrapper.model = cls(yaml, nc=2, verbose=False)
        wrapper.model.args = args
        wrapper.ckpt = {"train_args": dict(args)}  # trained files carry these; Ultralytics reads the task from them
        wrapper.model.names = {0: "face", 1: "hand"}
        randomise_(wrapper.model, seed)  # Ultralytics' own model, drawn as our tiny files are
        paths[kind] = out / f"random_yolov8n{'-seg' if kind == 'seg' else ''}.pt"
        wrapper.save(paths[kind])
    return paths


@pytest.fixture(scope="session")
def ultralytics_yolo():
    """Ultralytics' YOLO class (offline)."""
    _ultralytics()
    from ultralytics import YOLO
    return YOLO
