"""The test-only torchvision stand-in (tests/shims) against a brute-force NMS and Pillow."""
import importlib.metadata

import numpy as np
import pytest
import torch
from PIL import Image

from shims import use_torchvision_shim

tv = use_torchvision_shim()


def _brute_nms(boxes, scores, thr):
    b = boxes.double().numpy()
    area = (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])
    order = sorted(range(len(b)), key=lambda i: (-float(scores[i]), i))
    keep, removed = [], set()
    for i in order:
        if i in removed:
            continue
        keep.append(i)
        for j in order:
            if j in removed or j == i or j in keep:
                continue
            w = max(0.0, min(b[i, 2], b[j, 2]) - max(b[i, 0], b[j, 0]))
            h = max(0.0, min(b[i, 3], b[j, 3]) - max(b[i, 1], b[j, 1]))
            inter = w * h
            if inter / (area[i] + area[j] - inter) > thr:
                removed.add(j)
    return keep


def _boxes(g, n):
    xy = torch.rand(n, 2, generator=g) * 50
    wh = torch.rand(n, 2, generator=g) * 30 + 1
    return torch.cat([xy, xy + wh], 1)


@pytest.mark.parametrize("seed", range(5))
@pytest.mark.parametrize("thr", [0.1, 0.5, 0.7])
def test_nms_matches_brute_force(seed, thr):
    g = torch.Generator().manual_seed(seed)
    boxes, scores = _boxes(g, 60), torch.rand(60, generator=g)
    assert tv.ops.nms(boxes, scores, thr).tolist() == _brute_nms(boxes, scores, thr)


def test_batched_nms_is_nms_per_category():
    g = torch.Generator().manual_seed(7)
    boxes, scores = _boxes(g, 80), torch.rand(80, generator=g)
    idxs = torch.randint(0, 3, (80,), generator=g)
    expect = []
    for c in range(3):
        members = torch.nonzero(idxs == c).flatten()
        expect += [int(members[i]) for i in _brute_nms(boxes[members], scores[members], 0.5)]
    expect.sort(key=lambda i: -float(scores[i]))
    assert tv.ops.batched_nms(boxes, scores, idxs, 0.5).tolist() == expect
    from torchvision.ops.boxes import box_area
    assert torch.equal(box_area(boxes), (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1]))


def test_pil_resize_is_pillow():
    rng = np.random.default_rng(0)
    arr = rng.integers(0, 256, (37, 53, 3), dtype=np.uint8)
    from torchvision.transforms.functional import resize, to_pil_image
    out = resize(to_pil_image(arr), (20, 31))
    assert np.array_equal(np.array(out), np.array(Image.fromarray(arr).resize((31, 20), Image.BILINEAR)))


def test_tensor_resize_matches_pillow_float():
    """torchvision's antialiased tensor resize is Pillow's filter in float: compare channel by channel."""
    rng = np.random.default_rng(1)
    arr = rng.random((3, 45, 61)).astype(np.float32)
    out = tv.transforms.Resize((17, 23))(torch.from_numpy(arr))
    for c in range(3):
        ref = np.array(Image.fromarray(arr[c], mode="F").resize((23, 17), Image.BILINEAR))
        np.testing.assert_allclose(out[c].numpy(), ref, atol=2e-5)


def test_to_tensor_normalize_and_version():
    rng = np.random.default_rng(2)
    arr = rng.integers(0, 256, (5, 7, 3), dtype=np.uint8)
    t = tv.transforms.Compose([tv.transforms.ToTensor(), tv.transforms.Normalize([0.4, 0.5, 0.6], [0.2, 0.3, 0.4])])(arr)
    ref = (arr.transpose(2, 0, 1) / 255.0 - np.array([0.4, 0.5, 0.6])[:, None, None]) / np.array([0.2, 0.3, 0.4])[:, None, None]
    np.testing.assert_allclose(t.numpy(), ref, atol=1e-6)
    assert importlib.metadata.version("torchvision") == tv.__version__
