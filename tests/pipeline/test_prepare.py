"""Image-side preparation (A1111 steps 2–7) without a model."""
import numpy as np
import pytest
from PIL import Image, ImageDraw

from inpaintlab.prepare import prepare_inpaint, processing_size


def _picture(w=96, h=64, seed=0):
    rng = np.random.default_rng(seed)
    return Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8))


def _mask(size, box):
    m = Image.new("L", size, 0)
    ImageDraw.Draw(m).rectangle(box, fill=255)
    return m


def test_whole_picture_masks_and_infotext_keys():
    image, mask = _picture(), _mask((96, 64), (30, 20, 50, 40))
    prep = prepare_inpaint(image, mask, 96, 64, mask_blur=4)
    assert prep.paste_to is None and prep.extra == {"Mask blur": 4}
    blurred = np.asarray(prep.image_mask, dtype=np.int32)
    overlay = np.asarray(prep.overlay_mask, dtype=np.int32)
    np.testing.assert_array_equal(overlay, np.minimum(2 * blurred, 255))  # whole picture doubles the mask
    # A σ=4 blur reaches int(2.5·4 + 0.5) = 10 px beyond the rectangle, and not further.
    ys, xs = np.nonzero(blurred)
    assert (xs.min(), xs.max(), ys.min(), ys.max()) == (20, 60, 10, 50)
    assert prep.init.tobytes() == image.tobytes()  # "original": no fill, same size → untouched


def test_not_masked_inverts_before_blur_and_fill_changes_only_masked_pixels():
    image, mask = _picture(), _mask((96, 64), (30, 20, 50, 40))
    prep = prepare_inpaint(image, mask, 96, 64, mask_blur=0, mask_mode="not_masked", masked_content="fill")
    assert prep.extra == {"Mask mode": "Inpaint not masked", "Masked content": "fill"}
    keep = np.asarray(prep.repaint_mask) == 0
    assert keep[25, 35] and not keep[0, 0]
    np.testing.assert_array_equal(np.asarray(prep.init)[keep], np.asarray(image)[keep])
    assert not np.array_equal(np.asarray(prep.init)[~keep], np.asarray(image)[~keep])


def test_latent_fill_space_leaves_pixels_alone():
    image, mask = _picture(), _mask((96, 64), (30, 20, 50, 40))
    prep = prepare_inpaint(image, mask, 96, 64, masked_content="fill", fill_space="latent")
    assert prep.init.tobytes() == image.tobytes() and prep.extra["Masked content"] == "fill"
    noisy = prepare_inpaint(image, mask, 96, 64, masked_content="latent_noise", fill_space="latent")
    assert noisy.init.tobytes() != image.tobytes()  # A1111 pixel-fills for latent noise too


def test_only_masked_crop_geometry():
    # Spec §5 worked example: image 1024×768, processing 768×512, bbox (600,300,700,340), pad 16.
    image = _picture(1024, 768)
    mask = _mask((1024, 768), (600, 300, 699, 339))
    prep = prepare_inpaint(image, mask, 768, 512, mask_blur=0, inpaint_area="only_masked", padding=16)
    assert prep.paste_to == (584, 276, 132, 88)
    assert prep.init.size == (768, 512) and prep.image_mask.size == (768, 512)
    assert prep.overlay.size == (1024, 768)
    assert prep.extra == {"Inpaint area": "Only masked", "Masked area padding": 16}


def test_empty_mask_only_masked_falls_back_to_img2img():
    image = _picture()
    prep = prepare_inpaint(image, Image.new("L", (96, 64)), 96, 64, inpaint_area="only_masked")
    # The mask is dropped, but the keys A1111 recorded before the crop step stay in the infotext.
    assert prep.image_mask is None and prep.overlay is None and prep.extra == {"Mask blur": 4}


def test_mask_of_another_size_is_resized():
    image = _picture()
    small = _mask((48, 32), (15, 10, 25, 20))
    prep = prepare_inpaint(image, small, 96, 64, mask_blur=0)
    assert prep.image_mask.size == (96, 64)
    assert np.asarray(prep.image_mask)[30, 40] == 255 and np.asarray(prep.image_mask)[0, 0] == 0


def test_rgba_image_flattened_on_white_and_inputs_unchanged():
    image = Image.new("RGBA", (16, 16), (255, 0, 0, 0))
    before = image.tobytes()
    prep = prepare_inpaint(image, None, 16, 16)
    assert prep.init.getpixel((0, 0)) == (255, 255, 255)
    assert image.tobytes() == before


@pytest.mark.parametrize("kwargs, message", [
    ({"mask_mode": "inverted"}, "mask_mode"),
    ({"masked_content": "noise"}, "masked_content"),
    ({"inpaint_area": "crop"}, "inpaint_area"),
    ({"fill_space": "rgb"}, "fill_space"),
    ({"mask_blur": -1}, "mask_blur"),
])
def test_bad_settings(kwargs, message):
    with pytest.raises(ValueError, match=message):
        prepare_inpaint(_picture(), _mask((96, 64), (1, 1, 5, 5)), 96, 64, **kwargs)


def test_processing_size_rules():
    assert processing_size((100, 67), None, None) == (96, 64)
    assert processing_size((100, 67), 512, 256) == (512, 256)
    with pytest.raises(ValueError, match="width must be a positive multiple of 8"):
        processing_size((100, 67), 500, None)
    with pytest.raises(ValueError, match="height"):
        processing_size((100, 4), None, None)


def test_latent_upscale_resize_mode_is_refused():
    with pytest.raises(ValueError, match="latent upscale"):
        prepare_inpaint(_picture(), None, 96, 64, resize_mode=3)


@pytest.mark.parametrize("text, expected", [
    ("a cat # a comment", "a cat \n"),
    ("a\n# whole line\nb", "a\nb"),
    ("foo #bar\nbaz", "foo \nbaz"),
    ("foo\n#c", "foo\n"),
    ("#only", "\n"),
    ("no comment", "no comment"),
])
def test_prompt_comments_follow_a1111(text, expected):
    from inpaintlab.inpaint import strip_comments

    assert strip_comments(text) == expected
