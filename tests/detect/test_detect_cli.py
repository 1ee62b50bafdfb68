"""`inpaintlab detect` on the tiny random detector: JSON and ADetailer's masks written; bad input → one line."""
import json

import numpy as np
import torch
from PIL import Image

from inpaintlab.adetailer.technique import yolo_prediction
from inpaintlab.cli import main
from inpaintlab.detect import detect, load_detector
from inpaintlab.detect.tiny import make_tiny_detector, random_yolo


def test_detect_command_writes_boxes_scores_and_masks(tmp_path, capsys):
    model = make_tiny_detector(tmp_path / "tiny-yolov8n.safetensors")
    image = tmp_path / "pic.png"
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (72, 120, 3), dtype=np.uint8)).save(image)
    assert main(["detect", str(image), "--model", str(model), "--conf", "0.05", "--imgsz", "128",
                 "--out", str(tmp_path / "out")]) == 0
    printed = capsys.readouterr().out.split()
    record = json.loads((tmp_path / "out" / "pic-detections.json").read_text())
    n = len(record["detections"])
    assert n > 0 and printed[0].endswith("pic-detections.json") and len(printed) == 1 + n
    scores = [d["score"] for d in record["detections"]]
    assert scores == sorted(scores, reverse=True) and min(scores) > 0.05
    assert {d["name"] for d in record["detections"]} == {"face"}
    x1, y1, x2, y2 = record["detections"][0]["box"]
    mask = Image.open(tmp_path / "out" / "pic-mask-00.png")
    assert mask.size == (120, 72) and mask.getbbox() == (int(x1), int(y1), min(int(x2) + 1, 120), min(int(y2) + 1, 72))


def test_detect_command_errors_are_one_line(tmp_path, capsys):
    image = tmp_path / "pic.png"
    Image.new("RGB", (32, 32)).save(image)
    assert main(["detect", str(image), "--model", str(tmp_path / "missing.pt"), "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert "missing.pt: no such file" in err and err.count("\n") == 1


def test_segmentation_masks_for_adetailer_are_resized_from_the_letterboxed_input(tmp_path):
    make_tiny_detector(tmp_path / "seg.safetensors", segment=True, seed=1)
    detector = load_detector(tmp_path / "seg.safetensors")
    image = Image.fromarray(np.random.default_rng(1).integers(0, 256, (80, 128, 3), dtype=np.uint8))
    found = detect(detector, image, conf=0.05, imgsz=128)
    pred = yolo_prediction(detector, image, 0.05, imgsz=128)
    assert found.masks.shape[1:] == (96, 128) and len(pred) == len(found) > 0
    m = found.masks[0]
    want = Image.fromarray((m * 255).numpy()).resize((128, 80), Image.BICUBIC)  # padding squeezed in, as ADetailer
    assert np.array_equal(np.asarray(pred.masks[0]), np.asarray(want))
    assert torch.equal(random_yolo().state_dict()["model.22.dfl.conv.weight"].flatten(), torch.arange(16.0))
