"""Noise settings through the pipeline: RNG source, variation seeds, seed resize, ENSD, their infotext and --from-png.

Oracles: the initial noise rebuilt from fresh seeded generators (``ImageRNG`` is itself checked against numpy/float64
re-derivations in tests/samplers), A1111's per-image seed rule, and A1111's infotext rules for these keys.
"""
import numpy as np
import pytest
import torch
from PIL import Image, ImageDraw

import inpaintlab
from inpaintlab.cli import main
from inpaintlab.infotext import parse_infotext, read_png_infotext, settings_from_infotext
from inpaintlab.samplers import ImageRNG

FAST = dict(steps=3, cfg_scale=5.0, seed=1234)
LATENT = (4, 8, 8)


@pytest.fixture(scope="module")
def pipe(tiny_checkpoint):
    return inpaintlab.load(tiny_checkpoint, kernels="torch")


def picture(seed=0):
    rng = np.random.default_rng(seed)
    return Image.fromarray(rng.integers(0, 256, (64, 64, 3), dtype=np.uint8))


def mask():
    m = Image.new("L", (64, 64), 0)
    ImageDraw.Draw(m).rectangle((16, 16, 47, 47), fill=255)
    return m


def test_zero_strength_and_defaults_are_todays_image(pipe):
    today = pipe.inpaint(picture(), mask(), "x", **FAST)
    same = pipe.inpaint(picture(), mask(), "x", rng_source="CPU", subseed=99, subseed_strength=0.0,
                        seed_resize_from=(0, 0), ensd=0, **FAST)
    assert same.images[0].tobytes() == today.images[0].tobytes() and same.infotext == today.infotext
    assert today.subseeds is None
    noise = ImageRNG(LATENT, [1234]).next()
    torch.testing.assert_close(today.start_latent, today.init_latent + noise * today.sigmas[0], rtol=0, atol=0)
    fields = parse_infotext(today.infotext)
    assert fields["RNG"] == "CPU"
    assert not {"Variation seed", "Variation seed strength", "Seed resize from", "ENSD"} & set(fields)


def test_full_strength_gives_the_variation_seeds_initial_noise(pipe):
    # txt2img with a sampler that draws no later noise and no VAE posterior: the image is the subseed's image
    varied = pipe.txt2img("x", width=64, height=64, subseed=77, subseed_strength=1.0, **FAST)
    of_77 = pipe.txt2img("x", width=64, height=64, **{**FAST, "seed": 77})
    assert varied.images[0].tobytes() == of_77.images[0].tobytes()
    fields = parse_infotext(varied.infotext)
    assert (fields["Seed"], fields["Variation seed"], fields["Variation seed strength"]) == ("1234", "77", "1.0")
    # ancestral noise still continues the main seed's generator (A1111), so Euler a differs from seed 77's image
    euler_a = dict(sampler="Euler a", width=64, height=64)
    varied = pipe.txt2img("x", subseed=77, subseed_strength=1.0, **euler_a, **FAST)
    of_77 = pipe.txt2img("x", **euler_a, **{**FAST, "seed": 77})
    assert torch.equal(varied.start_latent, of_77.start_latent)
    assert varied.images[0].tobytes() != of_77.images[0].tobytes()


def test_batch_seeds_and_subseeds(pipe):
    result = pipe.inpaint(picture(), mask(), "x", batch_size=2, subseed=500, subseed_strength=0.4, **FAST)
    assert result.seeds == [1234, 1234] and result.subseeds == [500, 501]
    assert ["Variation seed: 500," in result.infotexts[0], "Variation seed: 501," in result.infotexts[1]] == [True] * 2
    want = ImageRNG(LATENT, [1234, 1234], subseeds=[500, 501], subseed_strength=0.4).next()
    torch.testing.assert_close(result.start_latent, result.init_latent + want * result.sigmas[0], rtol=0, atol=0)
    plain = pipe.inpaint(picture(), mask(), "x", batch_size=2, **FAST)
    assert plain.seeds == [1234, 1235]


def test_latent_noise_ignores_variation_seed_and_resize(pipe):
    result = pipe.inpaint(picture(), mask(), "x", masked_content="latent_noise", mask_blur=0, subseed=9,
                          subseed_strength=0.5, seed_resize_from=(48, 40), **FAST)
    m = result.latent_mask.bool()
    plain = ImageRNG(LATENT, [1234]).next()
    torch.testing.assert_close(result.init_latent[m], plain[m], rtol=0, atol=0)
    start_noise = ImageRNG(LATENT, [1234], subseeds=[9], subseed_strength=0.5, seed_resize_from=(48, 40)).next()
    torch.testing.assert_close(result.start_latent, result.init_latent + start_noise * result.sigmas[0], rtol=0,
                               atol=0)
    assert "Seed resize from: 48x40," in result.infotext


def test_ensd_and_nv_source(pipe):
    plain = pipe.inpaint(picture(), mask(), "x", sampler="Euler a", **FAST)
    ensd = pipe.inpaint(picture(), mask(), "x", sampler="Euler a", ensd=31337, **FAST)
    assert torch.equal(plain.start_latent, ensd.start_latent)
    assert plain.images[0].tobytes() != ensd.images[0].tobytes()
    assert parse_infotext(ensd.infotext)["ENSD"] == "31337"
    # DPM++ 2M draws nothing after the initial noise: same image, and A1111 does not record ENSD for it
    a = pipe.inpaint(picture(), mask(), "x", **FAST)
    b = pipe.inpaint(picture(), mask(), "x", ensd=31337, **FAST)
    assert a.images[0].tobytes() == b.images[0].tobytes() and "ENSD" not in b.infotext

    nv = pipe.inpaint(picture(), mask(), "x", rng_source="NV", **FAST)
    want = ImageRNG(LATENT, [1234], source="NV").next()
    torch.testing.assert_close(nv.start_latent, nv.init_latent + want * nv.sigmas[0], rtol=0, atol=0)
    assert parse_infotext(nv.infotext)["RNG"] == "NV"


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the error raised without CUDA")
def test_gpu_source_without_cuda_is_a_clear_error(pipe):
    with pytest.raises(ValueError, match="CUDA"):
        pipe.inpaint(picture(), mask(), "x", rng_source="GPU", **FAST)
    with pytest.raises(ValueError, match="rng_source|RNG source"):
        pipe.inpaint(picture(), mask(), "x", rng_source="cuda", **FAST)
    with pytest.raises(ValueError, match="seed_resize_from"):
        pipe.inpaint(picture(), mask(), "x", seed_resize_from=(48,), **FAST)


def test_infotext_reads_back_every_noise_key():
    text = ("x\nSteps: 3, Sampler: Euler a, Schedule type: Automatic, CFG scale: 5, Seed: 1234, Size: 64x64, "
            "Variation seed: 77, Variation seed strength: 0.3, Seed resize from: 48x40, Denoising strength: 0.75, "
            "ENSD: 31337, RNG: NV, Version: v1.10.1")
    settings = settings_from_infotext(text)
    assert (settings["subseed"], settings["subseed_strength"], settings["seed_resize_from"], settings["ensd"],
            settings["rng_source"]) == (77, 0.3, (48, 40), 31337, "NV")
    # A1111 leaves RNG out for its default source, the GPU (replayed with NV where CUDA is absent)
    want = "GPU" if torch.cuda.is_available() else "NV"
    assert settings_from_infotext(text.replace(", RNG: NV", ""))["rng_source"] == want


def test_cli_flags_and_from_png_round_trip(tiny_checkpoint, tmp_path):
    picture().save(tmp_path / "in.png")
    mask().save(tmp_path / "mask.png")
    common = ["inpaint", "--model", str(tiny_checkpoint), "--image", str(tmp_path / "in.png"), "--mask",
              str(tmp_path / "mask.png"), "--kernels", "torch", "--no-progress", "--steps", "2"]
    assert main([*common, "--prompt", "x", "--seed", "5", "--sampler", "Euler a", "--rng-source", "NV",
                 "--subseed", "8", "--subseed-strength", "0.25", "--seed-resize-from-w", "48",
                 "--seed-resize-from-h", "40", "--ensd", "31337", "--out", str(tmp_path / "a")]) == 0
    (first,) = sorted((tmp_path / "a").glob("*.png"))
    text = read_png_infotext(first)
    fields = parse_infotext(text)
    assert (fields["Variation seed"], fields["Variation seed strength"], fields["Seed resize from"], fields["ENSD"],
            fields["RNG"]) == ("8", "0.25", "48x40", "31337", "NV")
    assert main([*common, "--from-png", str(first), "--out", str(tmp_path / "b")]) == 0
    (second,) = sorted((tmp_path / "b").glob("*.png"))
    assert second.read_bytes() == first.read_bytes()
    # a flag replaces one side of the stored resize
    assert main([*common, "--from-png", str(first), "--seed-resize-from-w", "56", "--out", str(tmp_path / "c")]) == 0
    (third,) = sorted((tmp_path / "c").glob("*.png"))
    assert "Seed resize from: 56x40," in read_png_infotext(third)
