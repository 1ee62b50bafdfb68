"""Soft inpainting and Differential Diffusion end to end on tiny random-weight checkpoints.

Oracles: the binary pipeline (soft inpainting with a binary mask degenerates to it up to A1111's 1e-5 length shrink),
the input image (pixels the composite keeps), the decoded raw samples (pixels the composite gives to the generation),
and plain img2img (Differential Diffusion with a change map of 1 everywhere).
"""
import numpy as np
import pytest
import torch
from PIL import Image, ImageDraw

import inpaintlab
from inpaintlab import masking
from inpaintlab.infotext import parse_infotext

FAST = dict(steps=4, cfg_scale=5.0, seed=1234)


@pytest.fixture(scope="module")
def pipe(tiny_checkpoint):
    return inpaintlab.load(tiny_checkpoint, kernels="torch")


@pytest.fixture(scope="module")
def inpainting_pipe(tiny_inpainting_checkpoint):
    return inpaintlab.load(tiny_inpainting_checkpoint, kernels="torch")


def picture(w=64, h=64, seed=0):
    rng = np.random.default_rng(seed)
    base = np.linspace(0, 255, w, dtype=np.float64)[None, :, None] * np.ones((h, 1, 3))
    return Image.fromarray(np.clip(base + rng.integers(-40, 40, (h, w, 3)), 0, 255).astype(np.uint8))


def rect_mask(size, box, fill=255):
    m = Image.new("L", size, 0)
    ImageDraw.Draw(m).rectangle(box, fill=fill)
    return m


def test_binary_latent_mask_degenerates_to_the_binary_pipeline(pipe, monkeypatch):
    # Pillow's bicubic latent downsample makes any mask edge fractional, so a binary latent mask is forced here (A1111
    # gets one through `p.latent_mask`); then every per-step weight is 0 or 1 and soft inpainting is the binary blend
    # up to A1111's 1e-5 length shrink per call.
    real = masking.latent_mask
    monkeypatch.setattr(masking, "latent_mask", lambda m, w, h, round=True: real(m, w, h, round=True))
    image, mask = picture(128, 128), rect_mask((128, 128), (48, 48, 79, 79))
    binary = pipe.inpaint(image, mask, "a door", mask_blur=0, **FAST)
    softly = pipe.inpaint(image, mask, "a door", mask_blur=0, soft_inpainting=True, **FAST)
    assert set(softly.latent_mask.unique().tolist()) == {0.0, 1.0}
    # the raw sampler output equals the binary pipeline's blended latent up to the shrink: kept pixels by the last
    # call's 1e-5 in length (measured 1.0e-5), repainted ones by 1e-5 relative per call (measured 1.2e-5)
    diff, length = (softly.samples - binary.samples).norm(dim=1), binary.samples.norm(dim=1)
    kept = binary.latent_mask[:, 0] == 0
    assert 0 < diff[kept].max() < 2e-5
    assert (diff[~kept] / length[~kept]).max() < 5e-5
    src = np.asarray(image)
    for result in (binary, softly):  # both composites keep the input bit for bit wherever their mask is 0
        zero = np.asarray(result.overlay_mask) == 0
        assert zero.sum() > 500
        np.testing.assert_array_equal(np.asarray(result.images[0])[zero], src[zero])


def test_all_or_nothing_masks_match_the_binary_pipeline(pipe):
    image = picture(seed=1)
    for value in (0, 255):  # nmask 0 or 1 everywhere: t = nmask at every step, whatever the soft parameters
        mask = Image.new("L", (64, 64), value)
        binary = pipe.inpaint(image, mask, "a door", **FAST)
        softly = pipe.inpaint(image, mask, "a door", soft_inpainting=True, schedule_bias=3.0,
                              transition_contrast_boost=16.0, **FAST)
        assert (softly.samples - binary.samples).abs().max().item() < 1e-4
        if value == 0:
            assert softly.images[0].tobytes() == binary.images[0].tobytes() == image.tobytes()
        else:
            decoded = [np.asarray(pipe.decode_latents(r.samples)[0]).astype(int) for r in (binary, softly)]
            assert np.abs(decoded[0] - decoded[1]).max() <= 1


def test_soft_mask_composite_is_exact_at_both_ends(pipe):
    image, mask = picture(128, 128, seed=2), rect_mask((128, 128), (48, 48, 79, 79))
    result = pipe.inpaint(image, mask, "a window", mask_blur=8, soft_inpainting=True, **FAST)
    assert result.latent_mask.unique().numel() > 2  # unrounded: fractional latent mask
    overlay = np.asarray(result.overlay_mask)
    out, src = np.asarray(result.images[0]), np.asarray(image)
    original, generated = overlay == 0, overlay == 255
    assert original.sum() > 1000 and generated.sum() > 100 and ((overlay > 0) & (overlay < 255)).sum() > 100
    np.testing.assert_array_equal(out[original], src[original])  # overlay opaque: the input, bit for bit
    raw = np.asarray(pipe.decode_latents(result.samples)[0])  # no final latent blend: the raw sampler output
    np.testing.assert_array_equal(out[generated], raw[generated])
    fields = parse_infotext(result.infotext)
    # A1111 prints a whole slider value as an int ("4", not "4.0")
    assert fields["Soft inpainting enabled"] == "True" and fields["Soft inpainting transition contrast boost"] == "4"
    keys = list(fields)
    assert keys.index("Soft inpainting difference contrast") < keys.index("Mask blur")  # written before init()
    binary = pipe.inpaint(image, mask, "a window", mask_blur=8, **FAST)
    assert result.images[0].tobytes() != binary.images[0].tobytes()


@pytest.mark.parametrize("sampler", ["DDIM", "UniPC"])
def test_soft_with_timestep_samplers_blends_the_model_input(pipe, monkeypatch, sampler):
    # A1111's timestep samplers blend the model input (with their timestep in the exponent). With a binary latent mask
    # the soft input blend is the binary one up to the 1e-5 length shrink, so the repainted latents equal the binary
    # pipeline's. There is no final blend, so kept latents are the sampler's own x, which A1111's timestep samplers
    # never reset (only the model input is blended): on random weights they move, and the difference composite shows
    # the generation there.
    real = masking.latent_mask
    monkeypatch.setattr(masking, "latent_mask", lambda m, w, h, round=True: real(m, w, h, round=True))
    image, mask = picture(128, 128, seed=5), rect_mask((128, 128), (48, 48, 79, 79))
    settings = dict(FAST, steps=6, sampler=sampler)
    binary = pipe.inpaint(image, mask, "a door", mask_blur=0, **settings)
    softly = pipe.inpaint(image, mask, "a door", mask_blur=0, soft_inpainting=True, **settings)
    repainted = binary.latent_mask[:, 0] == 1
    diff, length = (softly.samples - binary.samples).norm(dim=1), binary.samples.norm(dim=1)
    assert repainted.sum() > 10 and (diff[repainted] / length[repainted]).max() < 1e-4
    assert diff[~repainted].max() > 1e-3  # binary: the init latent there; soft: the sampler's unblended x
    # the difference composite then shows the generation almost everywhere (254 of 255 on random weights)
    assert np.asarray(softly.overlay_mask).min() > np.asarray(binary.overlay_mask).min()
    with pytest.raises(ValueError, match="differential_diffusion runs with the k-diffusion samplers"):
        pipe.inpaint(image, mask, "a door", differential_diffusion=True, **settings)


def test_soft_only_masked_keeps_everything_outside_the_crop(pipe):
    image, mask = picture(96, 80, seed=3), rect_mask((96, 80), (50, 30, 61, 41))
    result = pipe.inpaint(image, mask, "a cat", inpaint_area="only_masked", padding=8, width=48, height=48,
                          mask_blur=2, soft_inpainting=True, mask_influence=1.0, **FAST)
    assert result.images[0].size == (96, 80) and result.overlay_mask.size == (96, 80)
    out, src = np.asarray(result.images[0]), np.asarray(image)
    overlay = np.asarray(result.overlay_mask)
    np.testing.assert_array_equal(out[overlay == 0], src[overlay == 0])
    assert overlay[:, :30].max() == 0 and overlay[35, 55] > 0


def test_soft_nine_channel_batch_uses_fractional_conditioning(inpainting_pipe, monkeypatch):
    seen = []
    unet = inpainting_pipe.unet
    original = unet.forward
    monkeypatch.setattr(unet, "forward", lambda x, *a, **k: seen.append(x[:, 4].clone()) or original(x, *a, **k))
    image, mask = picture(seed=4), rect_mask((64, 64), (20, 20, 43, 43))
    result = inpainting_pipe.inpaint(image, mask, "a door", mask_blur=6, soft_inpainting=True, batch_size=2,
                                     masked_content="latent_noise", **FAST)
    channel = seen[0]
    assert ((channel > 0) & (channel < 1)).any()  # the 9-channel mask keeps fractional values
    assert len(result.images) == len(result.overlay_masks) == 2
    assert result.overlay_masks[0].tobytes() != result.overlay_masks[1].tobytes()  # one composite per image
    for image_out, overlay in zip(result.images, result.overlay_masks):
        keep = np.asarray(overlay) == 0
        np.testing.assert_array_equal(np.asarray(image_out)[keep], np.asarray(image)[keep])


def test_differential_extremes_end_to_end(pipe):
    """Change 0 reproduces the input, change 1 is plain img2img, grey lies between."""
    image = picture(seed=5)
    none = pipe.inpaint(image, Image.new("L", (64, 64), 0), "x", differential_diffusion=True, **FAST)
    assert none.images[0].tobytes() == image.tobytes()  # change 0 everywhere: the input
    full = pipe.inpaint(image, Image.new("L", (64, 64), 255), "x", differential_diffusion=True, **FAST)
    plain = pipe.img2img(image, "x", **FAST)
    assert torch.equal(full.samples, plain.samples)  # change 1 everywhere: plain img2img at that strength
    assert full.images[0].tobytes() == plain.images[0].tobytes()
    assert parse_infotext(full.infotext)["Differential diffusion"] == "True"
    grey = pipe.inpaint(image, Image.new("L", (64, 64), 128), "x", differential_diffusion=True, **FAST)
    moved = [(r.samples - r.init_latent).norm(dim=1).mean() for r in (grey, full)]
    assert 0 < moved[0] < moved[1]  # about half the steps reset to the noised original: a smaller change


def test_soft_and_differential_settings_are_checked(pipe):
    image, mask = picture(), rect_mask((64, 64), (16, 16, 47, 47))
    with pytest.raises(ValueError, match="choose one"):
        pipe.inpaint(image, mask, "x", soft_inpainting=True, differential_diffusion=True, **FAST)
    with pytest.raises(ValueError, match="mask_influence"):
        pipe.inpaint(image, mask, "x", soft_inpainting=True, mask_influence=2.0, **FAST)


def test_cli_flags_and_from_png_round_trip(tiny_checkpoint, tmp_path):
    from inpaintlab.cli import main
    from inpaintlab.infotext import read_png_infotext, settings_from_infotext

    picture(seed=7).save(tmp_path / "image.png")
    rect_mask((64, 64), (16, 16, 47, 47)).save(tmp_path / "mask.png")
    common = ["--model", str(tiny_checkpoint), "--image", str(tmp_path / "image.png"), "--mask",
              str(tmp_path / "mask.png"), "--kernels", "torch", "--no-progress", "--steps", "2", "--seed", "5"]
    assert main(["inpaint", *common, "--prompt", "x", "--soft-inpainting", "--mask-influence", "0.25",
                 "--difference-contrast", "3", "--out", str(tmp_path / "a")]) == 0
    first = tmp_path / "a" / "00000-5.png"
    settings = settings_from_infotext(read_png_infotext(first))
    assert settings["soft_inpainting"] is True and settings["mask_influence"] == 0.25
    assert settings["difference_contrast"] == 3.0 and settings["schedule_bias"] == 1.0
    assert main(["inpaint", *common, "--from-png", str(first), "--out", str(tmp_path / "b")]) == 0
    again = tmp_path / "b" / "00000-5.png"
    assert read_png_infotext(again) == read_png_infotext(first)
    assert Image.open(again).tobytes() == Image.open(first).tobytes()
    # --no-soft-inpainting switches a PNG's soft inpainting off; Differential Diffusion reads back too
    assert main(["inpaint", *common, "--from-png", str(first), "--no-soft-inpainting", "--differential-diffusion",
                 "--out", str(tmp_path / "c")]) == 0
    settings = settings_from_infotext(read_png_infotext(tmp_path / "c" / "00000-5.png"))
    assert settings["differential_diffusion"] is True and "soft_inpainting" not in settings
