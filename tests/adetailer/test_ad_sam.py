"""Segment Anything as an ADetailer detector (tiny random SAM file): the prompted mask equals the predictor's own
best mask, automatic masks equal generate_masks', and a full ADetailer pass with it runs on the tiny checkpoint."""
import numpy as np
import pytest
from PIL import Image

import inpaintlab
from inpaintlab.adetailer import ADetailer, ADetailerUnit, sam_detector
from inpaintlab.adetailer.masks import Prediction
from inpaintlab.infotext import parse_infotext
from inpaintlab.segment import Predictor, SegmentError, generate_masks, load, make_tiny_sam


@pytest.fixture(scope="module")
def tiny_sam(tmp_path_factory):
    return make_tiny_sam(tmp_path_factory.mktemp("sam") / "tiny-sam.safetensors")


def _picture(w=64, h=48):
    return Image.fromarray(np.random.default_rng(3).integers(0, 256, (h, w, 3), dtype=np.uint8))


def test_prompted_mask_is_the_predictors_best(tiny_sam):
    image = _picture()
    points, labels, box = [[20, 14], [40, 30]], [1, 0], [5, 5, 50, 40]
    pred = sam_detector(tiny_sam, points=points, labels=labels, box=box)(image)
    direct = Predictor(load(tiny_sam))
    direct.set_image(np.asarray(image))
    masks, iou, _ = direct.predict(points=points, labels=labels, box=box, multimask=True)
    best = masks[int(np.argmax(iou))]
    assert isinstance(pred, Prediction) and len(pred) == 1
    assert np.array_equal(np.asarray(pred.masks[0]) > 0, best)
    assert set(np.unique(np.asarray(pred.masks[0]))) <= {0, 255}
    ys, xs = np.nonzero(best)
    assert pred.bboxes[0] == [xs.min(), ys.min(), xs.max() + 1, ys.max() + 1]  # Image.getbbox, as Python detectors


def test_automatic_masks_are_generate_masks(tiny_sam):
    image = _picture()
    options = {"points_per_side": 4, "pred_iou_thresh": 0.0, "stability_score_thresh": 0.0}
    pred = sam_detector(load(tiny_sam), **options)(image)
    found = [m for m in generate_masks(load(tiny_sam), np.asarray(image), **options) if m["segmentation"].any()]
    assert found and len(pred) == len(found)
    for mask, score, ref in zip(pred.masks, pred.confidences, found):
        assert np.array_equal(np.asarray(mask) > 0, ref["segmentation"])
        assert score == float(ref["predicted_iou"])


def test_bad_arguments_are_one_line_errors(tiny_sam):
    with pytest.raises(SegmentError, match="labels given without points"):
        sam_detector(tiny_sam, labels=[1])
    with pytest.raises(SegmentError, match="points_per_side apply to automatic masks only"):
        sam_detector(tiny_sam, points=[[1, 1]], points_per_side=4)


def test_full_adetailer_pass_with_a_sam_prompt(tiny_checkpoint, tiny_sam):
    pipe = inpaintlab.load(tiny_checkpoint, kernels="torch")
    base = {"steps": 2, "sampler": "Euler", "cfg_scale": 5.0, "seed": 11, "width": 64, "height": 64}
    plain = pipe.txt2img("a man", **base)
    detector = sam_detector(tiny_sam, box=[8, 8, 40, 40])
    sam_mask = detector(plain.images[0]).masks[0]
    technique = ADetailer(ADetailerUnit("sam", ad_inpaint_only_masked_padding=4),
                          detectors={"sam": detector})
    result = pipe.txt2img("a man", **base, techniques=[technique])
    assert len(technique.passes) == 1
    assert parse_infotext(result.infotext)["ADetailer model"] == "sam"
    # the pass is A1111's inpaint of the plain picture with SAM's mask dilated by ADetailer's default 4
    direct = pipe.inpaint(plain.images[0], technique.passes[0]["mask"], "a man", "", **dict(
        base, mask_blur=4, masked_content="original", denoising_strength=0.4, inpaint_area="only_masked",
        padding=4, resize_mode=0, mask_mode="masked", batch_size=1)).images[0]
    assert np.array_equal(np.asarray(result.images[0]), np.asarray(direct))
    assert np.asarray(technique.passes[0]["mask"]).sum() >= np.asarray(sam_mask).sum()
