"""generate_masks against segment_anything's SamAutomaticMaskGenerator.

(a) A deterministic synthetic decoder injected into both (spec §7.3b): each point gives three soft discs (radii
0.05/0.12/0.25 of the crop's short side, IoU 0.97/0.90/0.80), the largest with an island and a hole, so the IoU
and stability filters, per-crop and cross-crop NMS, the crop-edge filter and small-region removal all act. Both
sides see identical logits, so every field must be identical.
(b) A tiny random-weight SAM through both generators with the filters off and at percentile thresholds: the same
masks (pixel-identical where logits are not within float32 noise of 0), areas, boxes and scores to 1e-4.
"""
import numpy as np
import pytest
import torch

from inpaintlab.segment import load
from inpaintlab.segment.generator import generate_masks
from refs import reference_vit_sam, sa, state_dict

RADII, IOUS = (0.05, 0.12, 0.25), (0.97, 0.90, 0.80)


def disc_logits(points: torch.Tensor, js: torch.Tensor, size) -> torch.Tensor:
    """Logits [n, h, w] of disc j for point (x, y) in crop pixels (elementwise, so batching cannot change them)."""
    h, w = size
    yy = torch.arange(h, dtype=torch.float32)[None, :, None]
    xx = torch.arange(w, dtype=torch.float32)[None, None, :]
    px, py = points[:, 0, None, None].float(), points[:, 1, None, None].float()
    r = torch.tensor(RADII)[js][:, None, None] * min(h, w)
    logit = 8 * (r - torch.hypot(xx - px, yy - py)) / r
    big = (js == 2)[:, None, None]  # an island beside the largest disc and a hole inside it
    island = torch.maximum(logit, 8 * (3 - torch.hypot(xx - px - 1.6 * r, yy - py)) / 3)
    island = torch.minimum(island, 4 * (torch.hypot(xx - px - 0.5 * r, yy - py) - 2))
    return torch.where(big, island, logit)


class SyntheticPredictor:
    """The batch protocol of inpaintlab.segment.predictor with the disc decoder: 'low-res logits' carry the points."""

    points_dtype = np.float64
    mask_threshold = 0.0

    def set_image(self, image):
        self.original_size = image.shape[:2]

    def reset_image(self):
        pass

    def _predict_points_batch(self, coords):
        c = torch.as_tensor(coords)
        low = torch.cat([c[:, None, :].expand(-1, 3, -1), torch.arange(3.0, dtype=c.dtype)[None, :, None]
                         .expand(len(c), -1, -1)], dim=2)  # [B, 3, (x, y, j)]
        return low, torch.tensor(IOUS).expand(len(c), 3)

    def _upscale_logits(self, low):
        return disc_logits(low[:, :2], low[:, 2].long(), self.original_size)


def reference_synthetic(**params):
    gen = sa.SamAutomaticMaskGenerator(reference_vit_sam(), **params)
    pred = gen.predictor
    pred.set_image = lambda image: setattr(pred, "crop_size", image.shape[:2])
    pred.reset_image = lambda: None
    pred.transform.apply_coords = lambda points, size: points

    def predict_torch(points, labels, boxes=None, mask_input=None, multimask_output=True, return_logits=False):
        n = len(points)
        pts, js = points[:, 0].repeat_interleave(3, dim=0), torch.arange(3).repeat(n)
        masks = disc_logits(pts, js, pred.crop_size).view(n, 3, *pred.crop_size)
        return masks, torch.tensor(IOUS).expand(len(points), 3).clone(), None

    pred.predict_torch = predict_torch
    return gen


def assert_same(mine, ref, exact=True, tol=1e-4):
    assert len(mine) == len(ref)
    for m, r in zip(mine, ref):
        assert m["crop_box"] == r["crop_box"]
        if exact:
            assert m["bbox"] == r["bbox"] and m["area"] == r["area"]
            assert (m["segmentation"] == r["segmentation"]).all()
            assert m["predicted_iou"] == r["predicted_iou"] and m["stability_score"] == r["stability_score"]
            assert m["point_coords"] == r["point_coords"]
        else:
            assert np.allclose(m["bbox"], r["bbox"], atol=1) and abs(m["area"] - r["area"]) <= 2
            assert (m["segmentation"] != r["segmentation"]).sum() <= 2
            assert abs(m["predicted_iou"] - r["predicted_iou"]) < tol
            assert abs(m["stability_score"] - r["stability_score"]) < tol
            np.testing.assert_allclose(m["point_coords"], r["point_coords"])


SYNTHETIC_CASES = [
    dict(points_per_side=6, points_per_batch=7, pred_iou_thresh=0.85, stability_score_thresh=0.5,
         crop_n_layers=1, crop_n_points_downscale_factor=2),
    dict(points_per_side=3, points_per_batch=4, pred_iou_thresh=0.0, stability_score_thresh=0.0, crop_n_layers=2,
         box_nms_thresh=0.5, crop_nms_thresh=0.6),
    dict(points_per_side=4, points_per_batch=16, pred_iou_thresh=0.7, stability_score_thresh=0.55,
         stability_score_offset=0.5, min_mask_region_area=30, crop_n_layers=1),
]


@pytest.mark.parametrize("params", SYNTHETIC_CASES)
def test_synthetic_decoder_identical_to_reference(params):
    image = np.zeros((110, 160, 3), np.uint8)
    ref = reference_synthetic(**params).generate(image)
    mine = generate_masks(SyntheticPredictor(), image, memory_budget=1, **params)  # one mask at a time
    assert len(ref) > 3
    assert_same(mine, ref)
    if params.get("min_mask_region_area"):  # the island is gone and the hole filled in the large discs
        assert any(m["area"] > 0.1 * 110 * 160 for m in mine)


def test_random_weights_match_reference_at_percentile_thresholds():
    ref_model = reference_vit_sam(seed=4)
    ours = load(state_dict(ref_model))
    image = np.random.default_rng(4).integers(0, 256, (96, 128, 3), dtype=np.uint8)
    # Random logits are small: offset 0.05 spreads the stability scores over (0, 1).
    # Boxes of random masks overlap heavily: NMS (exercised by the synthetic decoder) is relaxed here.
    base = dict(points_per_side=4, points_per_batch=5, stability_score_offset=0.05, box_nms_thresh=1.0)
    relaxed = dict(base, pred_iou_thresh=0.0, stability_score_thresh=0.0, crop_nms_thresh=1.0, crop_n_layers=1)
    ref = sa.SamAutomaticMaskGenerator(ref_model, **relaxed).generate(image)
    mine = generate_masks(ours, image, **relaxed)
    assert len(ref) > 20
    assert_same(mine, ref, exact=False)
    # Thresholds at percentiles of the scores the whole-image crop produced, moved to midpoints between two scores.
    # A random net's IoU and stability are anti-correlated (the three outputs differ), so they are set one at a time.
    full = [m for m in ref if m["crop_box"] == [0, 0, 128, 96]]
    ious = np.sort([m["predicted_iou"] for m in full if m["predicted_iou"] > 0])
    stabs = np.sort([m["stability_score"] for m in full if m["stability_score"] > 0])

    def midpoint(values, q):
        i = int(len(values) * q / 100)
        return float(values[i] + values[i + 1]) / 2

    for q_iou, q_stab in ((30, None), (None, 70)):
        params = dict(base, pred_iou_thresh=midpoint(ious, q_iou) if q_iou else 0.0,
                      stability_score_thresh=midpoint(stabs, q_stab) if q_stab else 0.0)
        ref = sa.SamAutomaticMaskGenerator(ref_model, **params).generate(image)
        assert len(ref) > 1
        assert_same(generate_masks(ours, image, **params), ref, exact=False)


class SyntheticPredictor2(SyntheticPredictor):
    points_dtype = np.float32  # SAM 2's generator keeps its points in float32


def test_synthetic_decoder_identical_to_sam2_generator():
    """SAM 2's generator (sam2 1.1.0) with the same disc decoder and Inpaint Anything's SAM 2 settings (offset 0.7,
    one crop layer, points halved): float32 points, no small-region pass, same masks and fields."""
    from shims import use_torchvision_shim

    use_torchvision_shim()
    amg2 = pytest.importorskip("sam2.automatic_mask_generator")
    from sam2.utils.amg import build_all_layer_point_grids

    params = dict(points_per_side=6, points_per_batch=7, pred_iou_thresh=0.7, stability_score_thresh=0.5,
                  stability_score_offset=0.7, crop_n_layers=1, box_nms_thresh=0.7, crop_n_points_downscale_factor=2)
    gen = amg2.SAM2AutomaticMaskGenerator.__new__(amg2.SAM2AutomaticMaskGenerator)
    gen.__dict__.update(params, mask_threshold=0.0, crop_nms_thresh=0.7, crop_overlap_ratio=512 / 1500,
                        min_mask_region_area=0, output_mode="binary_mask", use_m2m=False, multimask_output=True,
                        point_grids=build_all_layer_point_grids(6, 1, 2))

    class Reference:
        device = torch.device("cpu")

        class _transforms:
            @staticmethod
            def transform_coords(points, normalize=True, orig_hw=None):
                return points

        def set_image(self, image):
            self.size = image.shape[:2]

        def reset_predictor(self):
            pass

        def _predict(self, points, labels, multimask_output=True, return_logits=True):
            n = len(points)
            pts, js = points[:, 0].repeat_interleave(3, dim=0), torch.arange(3).repeat(n)
            return disc_logits(pts, js, self.size).view(n, 3, *self.size), torch.tensor(IOUS).expand(n, 3), \
                torch.zeros(n, 3, 1, 1)

    gen.predictor = Reference()
    image = np.zeros((130, 170, 3), np.uint8)
    ref = gen.generate(image)
    mine = generate_masks(SyntheticPredictor2(), image, **params)
    assert len(ref) > 3 and isinstance(mine[0]["point_coords"][0][0], float)
    assert_same(mine, ref)
