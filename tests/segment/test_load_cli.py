"""Loading SAM files (official .pth through the weights-only unpickler, .safetensors, SAM 2's {"model": ...}
wrapper), bad input (non-SAM files, wrong shapes, points outside the image, wrong mask sizes), and the CLI on the
tiny SAM file."""
import json

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors.torch import save_file

from inpaintlab.cli import main
from inpaintlab.segment import Predictor, SegmentError, build_tiny_sam, load, make_tiny_sam


@pytest.fixture(scope="module")
def tiny_sam(tmp_path_factory):
    return make_tiny_sam(tmp_path_factory.mktemp("sam") / "tiny-sam.safetensors")


@pytest.fixture(scope="module")
def image(tmp_path_factory):
    rng = np.random.default_rng(0)
    img = np.kron(rng.integers(0, 256, (6, 8, 3), dtype=np.uint8), np.ones((16, 16, 1), np.uint8))
    path = tmp_path_factory.mktemp("img") / "image.png"
    Image.fromarray(img).save(path)
    return path


def test_pth_and_safetensors_load_the_same(tiny_sam, tmp_path):
    sd = build_tiny_sam().state_dict()
    torch.save(sd, tmp_path / "sam.pth")
    torch.save({"model": sd}, tmp_path / "wrapped.pt")
    a, b, c = load(tiny_sam), load(tmp_path / "sam.pth"), load(tmp_path / "wrapped.pt")
    for other in (b, c):
        for (k, v), (k2, v2) in zip(a.state_dict().items(), other.state_dict().items()):
            assert k == k2 and torch.equal(v, v2)
    assert a.family == "sam" and a.image_size == 256
    half = load(tiny_sam, dtype=torch.bfloat16)
    assert half.pixel_mean.dtype == torch.bfloat16 and half.mask_decoder.iou_token.weight.dtype == torch.bfloat16


def test_bad_files_are_one_line_errors(tmp_path):
    save_file({"model.diffusion_model.x": torch.zeros(2)}, str(tmp_path / "unet.safetensors"))
    with pytest.raises(SegmentError, match="not a Segment Anything model"):
        load(tmp_path / "unet.safetensors")
    sd = build_tiny_sam().state_dict()
    sd["mask_decoder.iou_token.weight"] = torch.zeros(1, 128)
    save_file({k: v.contiguous() for k, v in sd.items()}, str(tmp_path / "bad.safetensors"))
    with pytest.raises(SegmentError, match="shape mismatch.*iou_token"):
        load(tmp_path / "bad.safetensors")
    del sd["mask_decoder.iou_token.weight"]
    with pytest.raises(SegmentError, match="missing key"):
        load(sd)
    (tmp_path / "junk.pth").write_bytes(b"not a pickle")
    with pytest.raises(SegmentError, match="weights_only") as e:
        load(tmp_path / "junk.pth")
    assert "\n" not in str(e.value)

    class Evil:
        def __reduce__(self):
            return (print, ("ran",))
    torch.save({"x": Evil()}, tmp_path / "evil.pth")
    with pytest.raises(SegmentError, match="weights_only"):
        load(tmp_path / "evil.pth")


def test_predictor_bad_prompts():
    pred = Predictor(build_tiny_sam())
    with pytest.raises(SegmentError, match="no image set"):
        pred.predict(points=[[1, 1]], labels=[1])
    img = np.zeros((40, 60, 3), np.uint8)
    pred.set_image(img)
    with pytest.raises(SegmentError, match=r"point \[70.0, 5.0\] lies outside the 60x40 image"):
        pred.predict(points=[[70, 5]], labels=[1])
    with pytest.raises(SegmentError, match="one label per point"):
        pred.predict(points=[[1, 1], [2, 2]], labels=[1])
    with pytest.raises(SegmentError, match="mask_input must be 1x64x64"):
        pred.predict(points=[[1, 1]], labels=[1], mask_input=np.zeros((1, 256, 256)))
    with pytest.raises(SegmentError, match="box must be"):
        pred.predict(box=[10, 10, 5, 20])
    masks, iou, low = pred.predict(box=[5, 5, 30, 20])
    assert masks.shape == (3, 40, 60) and iou.shape == (3,) and low.shape == (3, 64, 64)
    assert (img == 0).all()


def test_cli_segment_and_mask(tiny_sam, image, tmp_path, capsys):
    out = tmp_path / "seg"
    assert main(["segment", str(image), "--sam", str(tiny_sam), "--out", str(out), "--points-per-side", "6",
                 "--pred-iou-thresh", "0", "--stability-score-thresh", "0"]) == 0
    records = json.loads((out / "masks.json").read_text())
    assert records and Image.open(out / "segments.png").size == (128, 96)
    assert [r["area"] for r in records] == sorted(r["area"] for r in records)
    first = np.asarray(Image.open(out / records[0]["file"]))
    assert (first > 0).sum() == records[0]["area"]
    assert main(["mask", str(image), "--sam", str(tiny_sam), "--out", str(tmp_path / "m.png"), "--points",
                 "20,30 60,40", "--labels", "1 0", "--expand", "2"]) == 0
    m = np.asarray(Image.open(tmp_path / "m.png"))
    assert m.shape == (96, 128) and set(np.unique(m)) <= {0, 255}
    assert main(["mask", str(image), "--sam", str(tiny_sam), "--out", str(tmp_path / "m2.png"), "--select", "5,5",
                 "--points-per-side", "4", "--pred-iou-thresh", "0", "--stability-score-thresh", "0"]) == 0
    assert main(["mask", str(image), "--sam", str(tiny_sam), "--out", str(tmp_path / "m3.png"), "--points",
                 "500,5"]) == 2
    assert "lies outside" in capsys.readouterr().err
    assert not (tmp_path / "m3.png").exists()
