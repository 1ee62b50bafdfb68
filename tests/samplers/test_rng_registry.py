"""Per-image RNG, seed resolution, sampler/scheduler names and schedule building."""
import pytest
import torch

import inpaintlab.samplers as samplers
from inpaintlab.samplers import (DEFAULT_SCHEDULER, SAMPLERS, SCHEDULERS, DiscreteSchedule, ImageRNG, build_sigmas,
                                 get_sigmas_exponential, get_sigmas_karras, resolve_sampler, resolve_seed)

SHAPE = (4, 6, 5)


def test_image_rng_matches_seeded_cpu_randn():
    seeds = [1234, 2 ** 40 + 3, 0]
    rng = ImageRNG(SHAPE, seeds)
    first, second = rng.next(), rng.next()
    assert first.shape == (3, *SHAPE) and first.dtype == torch.float32 and first.device.type == "cpu"
    for i, seed in enumerate(seeds):
        g = torch.Generator("cpu").manual_seed(seed)
        assert torch.equal(first[i], torch.randn(SHAPE, generator=g))
        assert torch.equal(second[i], torch.randn(SHAPE, generator=g))  # later draws continue the generator
    assert rng.draws == 2 and "ImageRNG" in repr(rng)


def test_image_rng_determinism_and_independence():
    a, b = ImageRNG(SHAPE, [7, 8]).next(), ImageRNG(SHAPE, [7, 8]).next()
    assert torch.equal(a, b)
    assert not torch.allclose(a[0], a[1])
    # an image's noise does not depend on its batch neighbours or on the global RNG
    torch.manual_seed(99)
    alone = ImageRNG(SHAPE, [8]).next()
    assert torch.equal(alone[0], a[1])
    big = ImageRNG(SHAPE, [2 ** 64 - 1]).next()
    assert torch.isfinite(big).all()


def test_image_rng_noise_sampler_and_ensd():
    rng = ImageRNG(SHAPE, [5])
    rng.next()
    via_sampler = rng.noise_sampler(torch.tensor(2.0), torch.tensor(1.0))
    g = torch.Generator().manual_seed(5)
    torch.randn(SHAPE, generator=g)
    assert torch.equal(via_sampler[0], torch.randn(SHAPE, generator=g))
    # ENSD: first draw from the seed, later draws from seed + delta
    rng = ImageRNG(SHAPE, [5], eta_noise_seed_delta=31337)
    assert torch.equal(rng.next()[0], torch.randn(SHAPE, generator=torch.Generator().manual_seed(5)))
    assert torch.equal(rng.next()[0], torch.randn(SHAPE, generator=torch.Generator().manual_seed(5 + 31337)))


def test_image_rng_bad_input():
    with pytest.raises(ValueError, match="seed"):
        ImageRNG(SHAPE, [-1])
    with pytest.raises(ValueError, match="seed"):
        ImageRNG(SHAPE, [2 ** 64])
    with pytest.raises(ValueError, match="seeds"):
        ImageRNG(SHAPE, [])
    with pytest.raises(ValueError, match="shape"):
        ImageRNG((4, 0, 5), [1])


def test_resolve_seed():
    assert resolve_seed(42) == 42 and resolve_seed("42") == 42 and resolve_seed(2 ** 40) == 2 ** 40
    for special in (-1, None, "-1", ""):
        seed = resolve_seed(special)
        assert isinstance(seed, int) and 0 <= seed < 4294967294
    assert len({resolve_seed(-1) for _ in range(20)}) > 1
    for bad in (-2, 2 ** 64, "abc", 1.5, True):
        with pytest.raises(ValueError, match="seed"):
            resolve_seed(bad)


def test_registry_contents():
    assert SAMPLERS["Euler"] is samplers.sample_euler
    assert SAMPLERS["DPM++ 2M"] is samplers.sample_dpmpp_2m
    assert SAMPLERS["Euler a"] is samplers.sample_euler_ancestral
    assert list(SCHEDULERS.values()) == ["Automatic", "Uniform", "Karras", "Exponential", "Polyexponential",
                                         "SGM Uniform", "KL Optimal", "Align Your Steps", "Simple", "Normal", "DDIM",
                                         "Beta"]
    assert list(SAMPLERS) == ["DPM++ 2M", "DPM++ SDE", "DPM++ 2M SDE", "DPM++ 2M SDE Heun", "DPM++ 2S a",
                              "DPM++ 3M SDE", "Euler a", "Euler", "LMS", "Heun", "DPM2", "DPM2 a", "DPM fast",
                              "DPM adaptive", "Restart", "DDIM", "DDIM CFG++", "PLMS", "UniPC", "LCM"]
    assert DEFAULT_SCHEDULER["DPM++ 2M"] == "Karras" and DEFAULT_SCHEDULER["Euler"] is None


@pytest.mark.parametrize("name,scheduler,expected", [
    ("DPM++ 2M", "Automatic", ("DPM++ 2M", "Karras")),
    ("DPM++ 2M", None, ("DPM++ 2M", "Karras")),
    ("DPM++ 2M Karras", "Automatic", ("DPM++ 2M", "Karras")),
    ("dpm++ 2m karras", "karras", ("DPM++ 2M", "Karras")),
    ("DPM++ 2M", "uniform", ("DPM++ 2M", "Uniform")),
    ("DPM++ 2M Exponential", "Automatic", ("DPM++ 2M", "Exponential")),
    ("Euler", "Automatic", ("Euler", "Automatic")),
    ("euler", "KARRAS", ("Euler", "Karras")),
    ("Euler Karras", "Automatic", ("Euler", "Karras")),
    ("Euler a", "automatic", ("Euler a", "Automatic")),
    ("k_dpmpp_2m", "Automatic", ("DPM++ 2M", "Karras")),
    ("Euler a Karras", "Automatic", ("Euler a", "Karras")),
    ("DPM++ 2M SDE Karras", "Automatic", ("DPM++ 2M SDE", "Karras")),
    ("DPM++ 2M SDE Heun", "Automatic", ("DPM++ 2M SDE Heun", "Exponential")),
    ("DPM++ 2M SDE Exponential", "Automatic", ("DPM++ 2M SDE", "Exponential")),
    ("DPM2 a Karras", "Automatic", ("DPM2 a", "Karras")),
    ("k_lms", "SGMUniform", ("LMS", "SGM Uniform")),
    ("Euler", "align your steps", ("Euler", "Align Your Steps")),
    ("ddim", "Karras", ("DDIM", "Karras")),
    ("Euler DDIM", "Automatic", ("Euler", "DDIM")),
])
def test_resolve_sampler(name, scheduler, expected):
    assert resolve_sampler(name, scheduler) == expected


def test_resolve_sampler_errors():
    with pytest.raises(ValueError, match="unknown sampler 'DDPM'.*DPM\\+\\+ 2M.*Euler"):
        resolve_sampler("DDPM")
    with pytest.raises(ValueError, match="unknown scheduler 'cosine'.*Automatic.*Karras"):
        resolve_sampler("Euler", "cosine")
    with pytest.raises(ValueError, match="also given"):
        resolve_sampler("DPM++ 2M Karras", "Exponential")
    with pytest.raises(ValueError, match="sampler name"):
        resolve_sampler("")


def test_build_sigmas():
    schedule = DiscreteSchedule()
    lo, hi = schedule.sigma_min, schedule.sigma_max
    assert torch.equal(build_sigmas(schedule, "DPM++ 2M", "Automatic", 20), get_sigmas_karras(20, lo, hi))
    assert torch.equal(build_sigmas(schedule, "DPM++ 2M Karras", "Automatic", 20), get_sigmas_karras(20, lo, hi))
    assert torch.equal(build_sigmas(schedule, "Euler", "Automatic", 20), schedule.get_sigmas(20))
    assert torch.equal(build_sigmas(schedule, "DPM++ 2M", "Uniform", 12), schedule.get_sigmas(12))
    assert torch.equal(build_sigmas(schedule, "Euler", "Exponential", 9), get_sigmas_exponential(9, lo, hi))
    # Euler "Automatic" is the model's uniform-in-t schedule, not Karras
    assert not torch.equal(build_sigmas(schedule, "Euler", "Automatic", 20), get_sigmas_karras(20, lo, hi))
    with pytest.raises(ValueError, match="positive int"):
        build_sigmas(schedule, "Euler", "Automatic", 0)
