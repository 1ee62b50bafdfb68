"""SAM 2 / 2.1 image path against sam2==1.1.0 on random weights (every zero/one-initialised tensor re-drawn).

The tiny Hiera (`HIERA_SIZES["tiny"]`: windowed, pooled and global blocks, padded windows) is built on both sides
at the real 1024 input; the released T/S/B+/L sizes are compared key by key and shape by shape on the meta device.
Tolerances: encoder outputs and logits rtol/atol 1e-4 (fp32, same op order; measured differences are 0 or ~1e-6).
"""
import math

import numpy as np
import pytest
import torch
from shims import use_torchvision_shim

use_torchvision_shim()

from inpaintlab.segment.sam2 import (SAM2Predictor, Sam2Config, Sam2Error, build_sam2, build_sam2_from_config,  # noqa: E402
                                     detect_sam2, is_sam2)

from sam2_reference import reference_meta_state, reference_sam2, use_sam2_transforms  # noqa: E402

use_sam2_transforms()

TOL = dict(rtol=1e-4, atol=1e-4)
POINTS = np.array([[100, 200], [300, 50]])
LABELS = np.array([1, 0])
BOX = np.array([50, 60, 400, 300])


def close(ours, ref, **tol):
    ours, ref = torch.as_tensor(np.asarray(ours)), torch.as_tensor(np.asarray(ref))
    assert ours.shape == ref.shape
    assert ref.abs().max() > 0.1  # random weights give non-trivial values; a zero would hide errors
    torch.testing.assert_close(ours.float(), ref.float(), **(tol or TOL))


@pytest.fixture(scope="module")
def pair():
    """Reference SAM 2.1 predictor and ours on the same random weights and image (encoded once for all tests)."""
    from sam2.sam2_image_predictor import SAM2ImagePredictor

    ref = reference_sam2("sam2.1", seed=1)
    sd = {k: v.clone() for k, v in ref.state_dict().items()}
    ours = build_sam2({"model": sd})
    assert all(torch.equal(sd[k], v) for k, v in ref.state_dict().items())  # the input is not modified
    image = np.random.default_rng(0).integers(0, 256, (480, 640, 3), dtype=np.uint8)
    neck = {}

    def keep_fpn(module, inputs, outputs):
        neck["fpn"] = outputs[0]  # returns None: the output is left as it is

    ref.image_encoder.neck.register_forward_hook(keep_fpn)
    rp, op = SAM2ImagePredictor(ref), SAM2Predictor(ours)
    rp.set_image(image)
    before = image.copy()
    op.set_image(image)
    assert np.array_equal(image, before)
    return rp, op, neck["fpn"], ref


def test_strict_load_and_detection(pair):
    _, op, _, ref = pair
    model = op.model
    assert (model.family, model.size, model.image_size) == ("sam2.1", "tiny", 1024)
    saved = model.state_dict()
    assert saved.keys() == ref.state_dict().keys()
    assert all(torch.equal(saved[k], v) for k, v in ref.state_dict().items())


def test_image_embeddings(pair):
    rp, op, ref_fpn, _ = pair
    for ours, ref in zip(op.features["backbone_fpn"], ref_fpn[:3]):  # the neck's stride 4/8/16 maps (scalp 1)
        close(ours, ref)
    close(op.features["image_embed"], rp._features["image_embed"])
    for ours, ref in zip(op.features["high_res_feats"], rp._features["high_res_feats"]):
        close(ours, ref)


@pytest.mark.parametrize("case", ["points", "box", "box+points", "single", "mask_input"])
def test_predict_logits(pair, case):
    rp, op, _, _ = pair
    kw = {"points": dict(point_coords=POINTS, point_labels=LABELS), "box": dict(box=BOX),
          "box+points": dict(point_coords=POINTS[:1], point_labels=LABELS[:1], box=BOX),
          "single": dict(point_coords=POINTS, point_labels=LABELS, multimask_output=False)}.get(case, {})
    if case == "mask_input":
        _, iou, low = rp.predict(POINTS, LABELS, multimask_output=True, return_logits=True)
        kw = dict(point_coords=POINTS[:1], point_labels=LABELS[:1], mask_input=low[None, int(np.argmax(iou))])
    ref = rp.predict(**kw, return_logits=True)
    ours = op.predict(kw.get("point_coords"), kw.get("point_labels"), kw.get("box"), kw.get("mask_input"),
                      multimask=kw.get("multimask_output", True), return_logits=True)
    assert ours[0].shape == (3 if kw.get("multimask_output", True) else 1, 480, 640)
    for o, r in zip(ours, ref):
        close(o, r)
    masks, _, _ = op.predict(kw.get("point_coords"), kw.get("point_labels"), kw.get("box"), kw.get("mask_input"),
                             multimask=kw.get("multimask_output", True))
    assert masks.dtype == np.bool_ and np.array_equal(masks, ours[0] > 0)


def test_dynamic_multimask(pair):
    """SAM 2's apply_postprocessing=True fallback from an unstable single mask to the best multimask output."""
    rp, op, _, ref = pair
    ref.sam_mask_decoder.dynamic_multimask_via_stability = True
    try:
        expected = rp.predict(POINTS[:1], LABELS[:1], multimask_output=False, return_logits=True)
    finally:
        ref.sam_mask_decoder.dynamic_multimask_via_stability = False
    dynamic = SAM2Predictor(op.model, dynamic_multimask=True)
    dynamic.features, dynamic.original_size = op.features, op.original_size
    ours = dynamic.predict(POINTS[:1], LABELS[:1], multimask=False, return_logits=True)
    for o, r in zip(ours, expected):
        close(o, r)


def test_points_batch_matches_generator_call(pair):
    """The generator's batched call: float32 grid points, one positive click each (SAM2AutomaticMaskGenerator), and
    the batch protocol of inpaintlab.segment's generator (low-res logits, then `_upscale_logits` chunk by chunk)."""
    rp, op, _, _ = pair
    points = (np.array([[0.125, 0.375], [0.625, 0.875], [0.875, 0.125]]) * [640, 480]).astype(op.points_dtype)
    pts = torch.as_tensor(points)
    in_points = rp._transforms.transform_coords(pts, normalize=True, orig_hw=(480, 640))
    ref_masks, ref_iou, ref_low = rp._predict(in_points[:, None, :], torch.ones(3, 1, dtype=torch.int),
                                              multimask_output=True, return_logits=True)
    low, iou = op._predict_points_batch(points)
    close(iou, ref_iou)
    close(low.clamp(-32, 32), ref_low)
    close(op._upscale_logits(low.flatten(0, 1)), ref_masks.flatten(0, 1))
    close(op._upscale_logits(low[1]), ref_masks[1])  # any chunk gives the same logits
    low2, _ = op._predict_points_batch(points[:, None, :], np.ones((3, 1)))
    assert torch.equal(low2, low)


def test_sam2_family_strict_load(pair):
    """SAM 2 (not 2.1): without obj_ptr_tpos_proj / no_obj_embed_spatial (the released sizes' key sets of both
    families are compared with sam2's own configs below); the state dict round-trips unchanged."""
    sd = {k: v for k, v in pair[3].state_dict().items() if not k.startswith(("obj_ptr_tpos_proj.",
                                                                             "no_obj_embed_spatial"))}
    model = build_sam2(sd)
    assert (model.family, model.size) == ("sam2", "tiny")
    assert model.state_dict().keys() == sd.keys()
    assert all(torch.equal(model.state_dict()[k], v) for k, v in sd.items())
    assert is_sam2(sd) and is_sam2({"model": sd}) and is_sam2(list(sd))
    assert not is_sam2([k for k in sd if k != "no_mem_embed"])


SPEC_PARAMS = {"t": 38_945_986, "s": 46_043_842, "b+": 80_833_666, "l": 224_430_130}  # SAM 2, without buffers


@pytest.mark.parametrize("family", ["sam2", "sam2.1"])
@pytest.mark.parametrize("size", ["t", "s", "b+", "l"])
def test_released_sizes_on_meta(family, size):
    model = build_sam2_from_config(Sam2Config.named(size, family), device="meta")
    ours = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    assert ours == reference_meta_state(family, size)
    params = sum(p.numel() for p in model.parameters())
    assert params == SPEC_PARAMS[size] + (16_512 if family == "sam2.1" else 0)
    detected = detect_sam2(model.state_dict())
    assert (detected.family, detected.size) == (family, size)
    assert math.prod(model.state_dict()["sam_prompt_encoder.pe_layer.positional_encoding_gaussian_matrix"].shape) == 256


def test_bad_state_dicts():
    sd = build_sam2_from_config(Sam2Config.named("tiny"), device="meta").state_dict()
    with pytest.raises(Sam2Error, match="not a SAM 2 checkpoint"):
        build_sam2({"model.0.weight": torch.zeros(1)})
    missing = {k: v for k, v in sd.items() if k != "sam_mask_decoder.conv_s0.bias"}
    with pytest.raises(Sam2Error, match=r"config mismatch .*1 missing \(sam_mask_decoder.conv_s0.bias\)"):
        build_sam2(missing)
    wrong = dict(sd, **{"image_encoder.trunk.patch_embed.proj.weight": torch.empty(40, 3, 7, 7, device="meta")})
    with pytest.raises(Sam2Error, match="embed dim 40.* none of the sizes"):
        build_sam2(wrong)
    shaped = dict(sd, **{"sam_mask_decoder.iou_token.weight": torch.empty(1, 128, device="meta")})
    with pytest.raises(Sam2Error, match="mis-shaped"):
        build_sam2(shaped)


def test_bad_prompts(pair):
    _, op, _, _ = pair
    fresh = SAM2Predictor(op.model)
    with pytest.raises(Sam2Error, match="no image set"):
        fresh.predict(POINTS, LABELS)
    with pytest.raises(Sam2Error, match="outside the 640x480 image"):
        op.predict([[700, 10]], [1])
    with pytest.raises(Sam2Error, match="labels must be"):
        op.predict(POINTS, [1, 2])
    with pytest.raises(Sam2Error, match="give both"):
        op.predict(POINTS)
    with pytest.raises(Sam2Error, match="mask_input"):
        op.predict(mask_input=np.zeros((64, 64)))
    with pytest.raises(Sam2Error, match="box must be"):
        op.predict(box=[10, 10, 5, 20])
    with pytest.raises(Sam2Error, match="uint8"):
        fresh.set_image(np.zeros((8, 8, 3), np.float32))
    with pytest.raises(Sam2Error, match="needs a SAM 2 model"):
        SAM2Predictor(torch.nn.Linear(1, 1))


def test_bfloat16_runs_close_to_float32(pair):
    """A bf16 model (the dtype Inpaint Anything autocasts SAM 2 to on recent GPUs) runs end to end on the CPU."""
    _, op, _, _ = pair
    half = SAM2Predictor(build_sam2(op.model.state_dict(), dtype=torch.bfloat16))
    half.set_image(np.random.default_rng(0).integers(0, 256, (480, 640, 3), dtype=np.uint8))
    ours, iou, _ = half.predict(POINTS, LABELS, return_logits=True)
    ref, ref_iou, _ = op.predict(POINTS, LABELS, return_logits=True)
    assert ours.dtype == np.float32 and np.abs(ours - ref).max() < 0.05 * np.abs(ref).max()
    assert np.abs(iou - ref_iou).max() < 0.05
