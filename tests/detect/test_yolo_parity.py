"""YOLOv8 against Ultralytics 8.4.190: random-weight files saved by Ultralytics, read by inpaintlab's loader.

Raw head output before NMS (unfused, eval mode) to fp32 rounding; boxes, scores, classes and masks of ``predict``
(BN fused on both sides) on a non-square image at a small imgsz.
"""
import numpy as np
import pytest
import torch
from PIL import Image

from inpaintlab.detect import detect, letterbox, load_detector


def _image(w=200, h=120, seed=0):
    rng = np.random.default_rng(seed)
    base = rng.integers(0, 256, (h // 8 + 1, w // 8 + 1, 3), dtype=np.uint8)
    big = np.kron(base, np.ones((8, 8, 1), dtype=np.uint8))[:h, :w]
    noise = rng.integers(-20, 21, (h, w, 3))
    return Image.fromarray(np.clip(big.astype(int) + noise, 0, 255).astype(np.uint8))


@pytest.mark.parametrize("kind", ["det", "seg"])
def test_raw_head_output_matches_ultralytics(kind, ultralytics_files, ultralytics_yolo):
    path = ultralytics_files[kind]
    theirs = ultralytics_yolo(str(path), verbose=False).model.float().eval()
    ours = load_detector(path, fuse=False)
    assert ours.names == {0: "face", 1: "hand"} and ours.segment == (kind == "seg")
    x, geo = letterbox(_image(), imgsz=160)
    assert geo.input_size == (96, 160)
    with torch.no_grad():
        ref = theirs(x)
        got = ours.model(x)
    if kind == "seg":
        (ref_y, ref_proto), _ = ref
        got_y, got_proto = got
        torch.testing.assert_close(got_proto, ref_proto, rtol=1e-5, atol=1e-5)
    else:
        ref_y, got_y = ref[0], got
    assert got_y.shape == ref_y.shape == (1, 4 + 2 + (32 if kind == "seg" else 0), 12 * 20 + 6 * 10 + 3 * 5)
    err = (got_y - ref_y).abs().max().item()
    assert err <= 1e-5 * ref_y.abs().max().item(), err


@pytest.mark.parametrize("kind", ["det", "seg"])
def test_predict_matches_ultralytics(kind, ultralytics_files, ultralytics_yolo):
    path = ultralytics_files[kind]
    image = _image(200, 120, seed=3)
    conf = 0.5
    task = "segment" if kind == "seg" else "detect"
    ref = ultralytics_yolo(str(path), task=task, verbose=False)(image, conf=conf, imgsz=160, device="cpu", verbose=False)[0]
    got = detect(load_detector(path), image, conf=conf, imgsz=160)
    assert len(got) == len(ref.boxes) > 3
    torch.testing.assert_close(got.boxes, ref.boxes.xyxy, rtol=0, atol=1e-3)
    torch.testing.assert_close(got.scores, ref.boxes.conf, rtol=0, atol=1e-5)
    assert torch.equal(got.classes, ref.boxes.cls.long())
    if kind == "seg":
        assert got.masks.shape == ref.masks.data.shape
        # a logit within rounding of 0 may flip a pixel: allow a handful over all masks
        assert (got.masks != ref.masks.data).sum().item() <= 5
        assert got.masks.sum() > 100
    else:
        assert got.masks is None and ref.masks is None

