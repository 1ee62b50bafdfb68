"""SAM v1, HQ-SAM and MobileSAM against segment-anything 1.0, segment-anything-hq 0.3 and MobileSAM's TinyViT:
random re-randomised weights, the reference's state dict loaded strictly, fp32 CPU. Compared: the image embedding
(and HQ's early feature), then predict() logits for points, a box, a mask input and single-mask output.
Tolerance: atol 1e-4 + rtol 1e-4 on embeddings and logits (float32 summation order only)."""
import numpy as np
import pytest
import torch

from inpaintlab.segment import Predictor, load
from refs import reference_mobile_sam, reference_vit_sam, sa, sa_hq, state_dict

TOL = dict(atol=1e-4, rtol=1e-4)


def _image(h=480, w=640, seed=0):
    return np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)


def _compare(ref_model, hq: bool, image):
    ours = load(state_dict(ref_model))
    ref = (sa_hq if hq else sa).SamPredictor(ref_model)
    ref.set_image(image)
    mine = Predictor(ours)
    mine.set_image(image)
    np.testing.assert_allclose(mine.features.numpy(), ref.features.numpy(), **TOL)
    if hq:
        np.testing.assert_allclose(mine.interm_features[0].numpy(), ref.interm_features[0].numpy(), **TOL)
    pts, lab = np.array([[100.0, 200.0], [300.0, 50.0]]), np.array([1, 0])
    box = np.array([50.0, 60.0, 400.0, 300.0])
    cases = [dict(points=pts, labels=lab), dict(box=box), dict(points=pts[:1], labels=lab[:1], box=box)]
    for case, multimask in zip(cases, (True, False, True)):
        if True:
            ref_args = dict(point_coords=case.get("points"), point_labels=case.get("labels"), box=case.get("box"),
                            multimask_output=multimask, return_logits=True)
            rm, ri, rl = ref.predict(**ref_args)
            mm, mi, ml = mine.predict(**case, multimask=multimask, return_logits=True)
            assert mm.shape == rm.shape == (len(ri), *image.shape[:2])
            np.testing.assert_allclose(ml, rl, **TOL)
            np.testing.assert_allclose(mi, ri, **TOL)
            np.testing.assert_allclose(mm, rm, **TOL)
    # A mask prompt: the previous call's best low-res logits.
    prev = rl[None, 0].copy()
    rm, ri, rl = ref.predict(point_coords=pts, point_labels=lab, mask_input=prev, multimask_output=True,
                             return_logits=True)
    mm, mi, ml = mine.predict(points=pts, labels=lab, mask_input=prev, return_logits=True)
    np.testing.assert_allclose(ml, rl, **TOL)
    np.testing.assert_allclose(mi, ri, **TOL)
    bm, _, _ = mine.predict(points=pts, labels=lab, mask_input=prev)
    assert bm.dtype == bool and (bm == (mm > 0)).all()
    return ours


def test_sam_v1_tiny_matches_segment_anything():
    ours = _compare(reference_vit_sam(), False, _image())
    assert ours.family == "sam" and ours.variant == "custom"


def test_hq_sam_tiny_matches_segment_anything_hq():
    ours = _compare(reference_vit_sam(hq=True, seed=1), True, _image(seed=1))
    assert ours.family == "sam_hq"


def test_mobile_sam_tiny_matches_tinyvit_reference():
    ours = _compare(reference_mobile_sam(seed=2), False, _image(330, 420, seed=2))
    assert ours.family == "mobile_sam"


def test_released_mobile_and_hq_light_shapes():
    """MobileSAM (vit_t) and HQ-SAM light (sam_hq vit_tiny) at their released size: keys and shapes of the
    references' state dicts, family and variant told from them; MobileSAM's count from spec §2.3."""
    from inpaintlab.segment.load import detect_family
    from inpaintlab.segment.model import Sam, SamConfig
    from refs import tiny_vit_module

    tiny_vit_module()
    # References built on the CPU: TinyViT's constructor reads values (.item()), which the meta device cannot.
    for ref, family, count in ((reference_mobile_sam_released(), "mobile_sam", 10_130_092),
                               (sa_hq.sam_model_registry["vit_tiny"](), "sam_hq", None)):
        sd = ref.state_dict()
        config = SamConfig.from_state_dict(sd)
        with torch.device("meta"):
            ours = Sam(config)
        assert detect_family(sd) == family and config.variant == "vit_t"
        assert {k: tuple(v.shape) for k, v in ours.state_dict().items()} == \
            {k: tuple(v.shape) for k, v in sd.items()}
        if count:
            assert sum(p.numel() for p in ours.parameters()) == count


def reference_mobile_sam_released():
    from refs import tiny_vit_module

    enc = tiny_vit_module().TinyViT(img_size=1024, in_chans=3, num_classes=1000, embed_dims=[64, 128, 160, 320],
                                    depths=[2, 2, 6, 2], num_heads=[2, 4, 5, 10], window_sizes=[7, 7, 14, 7],
                                    drop_path_rate=0.0)
    prompt = sa.modeling.PromptEncoder(embed_dim=256, image_embedding_size=(64, 64), input_image_size=(1024, 1024),
                                       mask_in_chans=16)
    decoder = sa.modeling.MaskDecoder(num_multimask_outputs=3, transformer=sa.modeling.TwoWayTransformer(
        depth=2, embedding_dim=256, mlp_dim=2048, num_heads=8), transformer_dim=256)
    return sa.modeling.Sam(enc, prompt, decoder, [123.675, 116.28, 103.53], [58.395, 57.12, 57.375])


@pytest.mark.parametrize("name,params", [("vit_b", 93_735_472), ("vit_l", 312_342_832), ("vit_h", 641_090_608)])
def test_released_sizes_on_meta_device(name, params):
    """The released ViT sizes: the reference's key names and shapes (meta device), parameter counts from spec §2.3."""
    from inpaintlab.segment.load import detect_family
    from inpaintlab.segment.model import Sam, SamConfig

    with torch.device("meta"):
        ref = sa.sam_model_registry[name]()
        sd = ref.state_dict()
        config = SamConfig.from_state_dict(sd)
        ours = Sam(config)
    assert config.variant == name and detect_family(sd) == "sam"
    assert {k: tuple(v.shape) for k, v in ours.state_dict().items()} == {k: tuple(v.shape) for k, v in sd.items()}
    assert sum(p.numel() for p in ours.parameters()) == params
