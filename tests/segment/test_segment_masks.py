"""Mask tools and generator arithmetic against hand-computed examples (spec §7.1)."""
import numpy as np
import pytest
from PIL import Image, ImageFilter

from inpaintlab.segment import SegmentError, amg
from inpaintlab.segment.generator import inpaint_anything_params
from inpaintlab.segment.masks import (add_mask, auto_resize, colormap504, erode_mask, expand_mask, feather_mask,
                                      invert_mask, pad_image, restrict_to_region, segment_map, select, sort_masks,
                                      trim_mask)
from inpaintlab.segment.predictor import preprocess_shape


def test_colormap504_by_hand():
    cmap = colormap504()
    assert cmap.shape == (504, 3) and cmap.dtype == np.uint8
    expected = [[128, 0, 0], [0, 128, 0], [128, 128, 0], [0, 0, 128], [128, 0, 128], [0, 128, 128],
                [128, 128, 128], [64, 0, 0], [192, 0, 0], [64, 128, 0]]
    assert cmap[:10].tolist() == expected
    # PASCAL entry i=9 is [192,0,0]; i=64 ([0,0,0] shifted... max < 64) is one of the 8 dropped (0, 64, ..., 448).
    assert [0, 0, 0] not in cmap.tolist() and len({tuple(c) for c in cmap}) == 504


def _masks():
    """Three overlapping masks on 4x6, given largest first so sorting matters."""
    a = np.zeros((4, 6), bool)
    a[:, :4] = True  # area 16
    b = np.zeros((4, 6), bool)
    b[1:3, 2:5] = True  # area 6
    c = np.zeros((4, 6), bool)
    c[0, 3:6] = True  # area 3
    return [{"segmentation": a}, {"segmentation": b}, {"segmentation": c}]


def test_sort_and_segment_map_smallest_first():
    masks = _masks()
    assert [int(m["segmentation"].sum()) for m in sort_masks(masks)] == [3, 6, 16]
    cmap = colormap504()
    owner = np.array([[2, 2, 2, 0, 0, 0],
                      [2, 2, 1, 1, 1, -1],
                      [2, 2, 1, 1, 1, -1],
                      [2, 2, 2, 2, -1, -1]])
    expected = np.where(owner[..., None] >= 0, cmap[np.maximum(owner, 0)], 0)
    assert (segment_map(masks) == expected).all()
    pad = np.zeros((4, 6), np.uint8)
    pad[3, 5] = 255
    with_pad = segment_map(masks, pad_mask=pad)
    assert with_pad[3, 5].tolist() == [128, 0, 0] and with_pad[0, 4].tolist() == cmap[1].tolist()
    assert segment_map([], size=(2, 3)).shape == (2, 3, 3)


def test_segment_map_past_255_and_504_masks():
    """Pass 2 of the extension's colouring: mask k >= 255 gets colormap504[k]; past 504, black."""
    h, w = 1, 600
    masks = []
    for k in range(600):
        seg = np.zeros((h, w), bool)
        seg[0, k] = True
        masks.append({"segmentation": seg})
    img = segment_map(masks)
    cmap = colormap504()
    assert (img[0, :504] == cmap).all() and (img[0, 504:] == 0).all()


def test_select_by_sketch_and_points():
    masks = _masks()
    sketch = np.zeros((4, 6, 3), np.uint8)
    sketch[1, 3] = 7  # touches b's visible part only
    m = select(masks, sketch)
    expected = np.zeros((4, 6), np.uint8)
    expected[1:3, 2:5] = 255
    assert (m == expected).all()
    # a point on a's visible part selects its visible region (not the full mask)
    m = select(masks, points=[(0.5, 3.2)])
    owner_a = np.zeros((4, 6), bool)
    owner_a[:, :2] = True
    owner_a[3, 2:4] = True
    owner_a[0, 2] = True
    assert (m == np.where(owner_a, 255, 0)).all()
    # black (uncovered) pixels: ignored by default, all of them selected otherwise
    assert not select(masks, points=[(5, 3)]).any()
    black = select(masks, points=[(5, 3)], ignore_black=False)
    assert black.sum() // 255 == 4 and black[1, 5] == 255 and black[3, 4] == 255
    assert (select(masks, points=[(5, 3)], invert=True) == 255).all()
    with pytest.raises(SegmentError, match="outside"):
        select(masks, points=[(6, 0)])
    with pytest.raises(SegmentError, match="empty selection"):
        select(masks, np.zeros((4, 6), np.uint8))
    with pytest.raises(SegmentError, match="sketch is 5x4"):
        select(masks, np.ones((4, 5), np.uint8))


def test_expand_erode_feather_trim_add_invert():
    m = np.zeros((9, 9), np.uint8)
    m[4, 4] = 255
    assert expand_mask(m, 1).sum() // 255 == 9
    assert (expand_mask(m, 4) == 255).all()  # a 9x9 square: Chebyshev growth of 4
    assert expand_mask(m, 0).sum() // 255 == 9  # clipped to 1
    assert (expand_mask(m, 500) == 255).all()
    sq = np.zeros((9, 9), np.uint8)
    sq[2:7, 2:7] = 255
    e = erode_mask(sq, 1)
    assert e.sum() // 255 == 9 and e[3:6, 3:6].all()
    assert (erode_mask(np.full((3, 3), 255, np.uint8), 5) == 255).all()  # the border counts as set
    f = feather_mask(m, 2)
    assert (f == np.asarray(Image.fromarray(m).filter(ImageFilter.GaussianBlur(2)))).all() and 0 < f[4, 4] < 255
    sketch = np.zeros((9, 9), bool)
    sketch[4, :] = True
    t = trim_mask(sq, sketch)
    assert t[4].sum() == 0 and t[3, 2:7].all()
    a = add_mask(sq, sketch)
    assert a[4].all() and a[3, 2:7].all() and not a[0].any()
    assert (invert_mask(sq) == 255 - sq).all()
    r = restrict_to_region(sq, (0, 0, 4, 9))
    assert r[:, 4:].sum() == 0 and r[2:7, 2:4].all()


def test_point_grids_and_crop_boxes():
    assert np.allclose(amg.point_grid(4)[:5], [[0.125, 0.125], [0.375, 0.125], [0.625, 0.125], [0.875, 0.125],
                                               [0.125, 0.375]])
    assert [len(g) for g in amg.layer_point_grids(32, 2, 2)] == [1024, 256, 64]
    boxes, layers = amg.crop_boxes((512, 768), 1, 512 / 1500)
    assert boxes == [[0, 0, 768, 512], [0, 0, 471, 343], [0, 169, 471, 512], [297, 0, 768, 343],
                     [297, 169, 768, 512]]
    assert layers == [0, 1, 1, 1, 1]
    # two layers on a square image: overlap int(ratio*600*2/4) = 102 -> crop ceil((102*3+600)/4) = 227 at 0,125,250,375
    boxes, layers = amg.crop_boxes((600, 600), 2, 512 / 1500)
    assert len(boxes) == 21 and layers.count(2) == 16
    assert boxes[5] == [0, 0, 227, 227] and boxes[-1] == [375, 375, 600, 600] and boxes[6] == [0, 125, 227, 352]


def test_resize_longest_side_and_auto_resize_shapes():
    assert preprocess_shape(512, 768, 1024) == (683, 1024)
    assert preprocess_shape(1080, 1920, 1024) == (576, 1024)
    assert preprocess_shape(333, 500, 1024) == (682, 1024)
    for (w, h), out in (((770, 513), (768, 512)), ((1000, 750), (1000, 744)), ((959, 637), (952, 632))):
        img, mask = auto_resize(Image.new("RGB", (w, h)), Image.new("RGB", (w, h)))
        assert img.size == out and mask.size == out


def test_padding_example():
    image = np.zeros((512, 768, 3), np.uint8)
    padded, pad = pad_image(image, 1.25, 1.1)
    assert padded.shape == (563, 960, 3)
    assert pad[:25].all() and pad[-26:].all() and pad[:, :96].all() and pad[:, -96:].all()
    assert not pad[25:-26, 96:-96].any()
    assert (pad_image(image, 1.25, 1.0, mode="constant", fill=127)[0][:, :96] == 127).all()


@pytest.mark.parametrize("family,anime,expected", [
    ("sam", False, (0.88, 0.95, 64)), ("sam", True, (0.83, 0.90, 64)), ("sam_hq", False, (0.88, 0.95, 32)),
    ("mobile_sam", True, (0.83, 0.90, 64)), ("sam2", False, (0.70, 0.92, 128)), ("sam2.1", True, (0.65, 0.87, 128)),
])
def test_inpaint_anything_thresholds(family, anime, expected):
    p = inpaint_anything_params(family, anime)
    assert (p["pred_iou_thresh"], p["stability_score_thresh"], p["points_per_batch"]) == expected
    if family.startswith("sam2"):
        assert p["points_per_side"] == 64 and p["stability_score_offset"] == 0.7 and p["crop_n_layers"] == 1


def test_rle_round_trip_and_nms_by_hand():
    rng = np.random.default_rng(0)
    import torch
    masks = torch.from_numpy(rng.random((3, 5, 4)) > 0.5)
    masks[0] = True
    masks[1] = False
    rles = amg.rle_encode(masks, [2, 1, 6, 6], (7, 9))
    for m, rle in zip(masks, rles):
        full = np.zeros((7, 9), bool)
        full[1:6, 2:6] = m.numpy()
        assert (amg.rle_to_mask(rle) == full).all() and amg.rle_area(rle) == full.sum()
        assert sum(rle["counts"]) == 63
    boxes = torch.tensor([[0, 0, 10, 10], [1, 1, 11, 11], [20, 20, 30, 30], [0, 0, 10, 9]])
    # IoU(0,1) = 81/119 = 0.68, IoU(0,3) = 0.9: at 0.7 box 3 goes, box 1 stays
    assert amg.nms(boxes, torch.tensor([0.9, 0.8, 0.7, 0.95]), 0.7).tolist() == [3, 1, 2]
