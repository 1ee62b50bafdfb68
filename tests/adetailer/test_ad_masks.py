"""ADetailer's mask operations against the spec's hand-computed examples and a float64 re-derivation."""
import numpy as np
import pytest
from PIL import Image

from inpaintlab.adetailer.masks import (Prediction, dilate_erode, filter_by_ratio, filter_k_by, mask_preprocess,
                                        masks_from_images, merge_invert, offset, pred_preprocessing, rectangle_masks,
                                        sort_bboxes)


def _mask(rows, cols, size=(12, 12)):
    a = np.zeros(size[::-1], np.uint8)
    a[rows[0]:rows[1] + 1, cols[0]:cols[1] + 1] = 255
    return Image.fromarray(a)


def _span(mask, axis):
    idx = np.nonzero(np.asarray(mask).any(axis=axis))[0]
    return (int(idx[0]), int(idx[-1])) if len(idx) else None


def test_rectangle_truncates_and_includes_both_corners():
    (m,) = rectangle_masks([[10.6, 20.4, 30.5, 40.5]], (64, 64))
    assert m.getbbox() == (10, 20, 31, 41)


def test_dilate_and_erode_by_four_follow_the_kernel_anchor():
    one = _mask((4, 4), (4, 4))
    d = dilate_erode(one, 4)
    assert _span(d, 1) == (3, 6) and _span(d, 0) == (3, 6)
    e = dilate_erode(_mask((3, 8), (3, 8)), -4)
    assert _span(e, 1) == (5, 7) and _span(e, 0) == (5, 7)
    assert dilate_erode(one, 0) is one


@pytest.mark.parametrize("v", [2, 3, 4, 5, -2, -3, -4, -5])
def test_dilate_erode_against_a_direct_min_max(v):
    rng = np.random.default_rng(abs(v))
    a = (rng.random((20, 24)) > 0.7).astype(np.float64) * 255
    n = abs(v)
    lo = n // 2  # anchor at the kernel centre: offsets -n//2 … n - 1 - n//2
    big = np.pad(a, n, constant_values=0 if v > 0 else 255)
    stack = [big[n + dy:n + dy + 20, n + dx:n + dx + 24] for dy in range(-lo, n - lo) for dx in range(-lo, n - lo)]
    want = np.max(stack, 0) if v > 0 else np.min(stack, 0)
    got = np.asarray(dilate_erode(Image.fromarray(a.astype(np.uint8)), v))
    assert np.array_equal(got, want.astype(np.uint8))


def test_offset_wraps_and_positive_y_moves_up():
    m = offset(_mask((0, 1), (10, 11)), x=3, y=1)
    a = np.asarray(m) > 0
    assert a[11, 1] and a[0, 1] and a[11, 2] and a[0, 2]  # x 10,11 → 13,14 ≡ 1,2; row 0 → −1 ≡ 11 (up, wrapped)
    assert a.sum() == 4


def test_merge_and_invert():
    a, b = _mask((0, 3), (0, 3)), _mask((2, 5), (2, 5))
    assert len(merge_invert([a, b], "None")) == 2
    (m,) = merge_invert([a, b], "Merge")
    assert np.array_equal(np.asarray(m), np.maximum(np.asarray(a), np.asarray(b)))
    (inv,) = merge_invert([a, b], "Merge and Invert")
    assert np.array_equal(np.asarray(inv), 255 - np.asarray(m))


def _pred():
    boxes = [[0, 0, 10, 10], [50, 50, 90, 90], [20, 30, 25, 35], [60, 0, 100, 20]]
    return Prediction(boxes, rectangle_masks(boxes, (100, 100)), [0.9, 0.5, 0.8, 0.7])


def test_filters_and_sort_orders():
    pred = _pred()  # areas 100, 1600, 25, 800 on a 100×100 image
    assert filter_by_ratio(pred, 0.01, 0.08, (100, 100)).bboxes == [pred.bboxes[0], pred.bboxes[3]]  # bounds inclusive
    assert filter_k_by(pred, 2, "Area").bboxes == [pred.bboxes[1], pred.bboxes[3]]
    assert filter_k_by(pred, 2, "Confidence").confidences == [0.9, 0.8]
    assert filter_k_by(pred, 0).bboxes == pred.bboxes
    size = (100, 100)
    assert [b[0] for b in sort_bboxes(pred, "Position (left to right)", size).bboxes] == [0, 20, 50, 60]
    assert sort_bboxes(pred, "Area (large to small)", size).confidences == [0.5, 0.7, 0.9, 0.8]
    # centres (5,5) (70,70) (22.5,32.5) (80,10); distances² to (50,50): 4050, 800, 1062.5, 3225
    assert sort_bboxes(pred, "Position (center to edge)", size).confidences == [0.5, 0.8, 0.7, 0.9]
    assert sort_bboxes(pred, "None", size).bboxes == pred.bboxes


def test_preprocess_drops_masks_eroded_to_nothing_and_keeps_box_order():
    pred = _pred()
    masks, kept = pred_preprocessing(pred, (100, 100), dilate=-7, sort_by="Position (left to right)")
    assert len(kept) == 4 and len(masks) == 3  # the 6×6-pixel box vanishes under a 7×7 erosion
    assert [m.getbbox()[0] for m in masks] == [0, 53, 63]  # outside the image counts as set (OpenCV's erode border)
    masks, _ = pred_preprocessing(pred, (100, 100), merge_mode="Merge", user_mask=_mask((0, 5), (0, 5), (100, 100)))
    assert len(masks) == 1
    assert pred_preprocessing(pred, (100, 100), merge_mode="None", user_mask=_mask((0, 5), (0, 5), (100, 100)))[0][
        0].getbbox() == (0, 0, 13, 13)  # box 0 dilated by 4: 1 up-left, 2 down-right, Pillow's inclusive corner


def test_masks_from_images_skips_empty_masks():
    pred = masks_from_images([_mask((2, 4), (1, 3)), Image.new("L", (12, 12))])
    assert pred.bboxes == [[1, 2, 4, 5]] and pred.confidences == [1.0]
    assert mask_preprocess([], 4) == []
