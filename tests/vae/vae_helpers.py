"""Tiny-VAE helpers: a fresh config and weights re-initialised so that mapping mistakes change the output.

A uniquely named module rather than conftest.py, so that `import` from a test file cannot pick up another directory's
conftest. Test modules import the fixtures from here.
"""
import pytest

from inpaintlab.tiny import reinit_  # noqa: F401  (spec checkpoints.md §6.3 re-initialisation, shared)
from inpaintlab.vae import AutoencoderKL, VAEConfig

TINY = dict(ch=32, ch_mult=(1, 2, 2), num_res_blocks=2)


@pytest.fixture
def tiny_config() -> VAEConfig:
    return VAEConfig(**TINY)


@pytest.fixture
def tiny_vae(tiny_config) -> AutoencoderKL:
    return reinit_(AutoencoderKL(tiny_config)).eval()
