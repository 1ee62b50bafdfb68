"""Tiny-VAE helpers: a fresh config and weights re-initialised so that mapping mistakes change the output.

A uniquely named module rather than conftest.py, so that `import` from a test file cannot pick up another directory's
conftest. Test modules import the fixtures from here.
"""
import pytest
import torch
from torch import nn

from inpaintlab.kernels import GroupNorm
from inpaintlab.vae import AutoencoderKL, VAEConfig

TINY = dict(ch=32, ch_mult=(1, 2, 2), num_res_blocks=2)


def reinit_(model: nn.Module, seed: int = 0) -> nn.Module:
    """~1/sqrt(fan_in) weights, non-trivial norm affines and biases, attention q/k x1.5 (spec checkpoints.md §6.3)."""
    g = torch.Generator().manual_seed(seed)

    def randn(t: torch.Tensor) -> torch.Tensor:
        return torch.randn(t.shape, generator=g, dtype=torch.float32).to(t.dtype)

    with torch.no_grad():
        for name, module in model.named_modules():
            if isinstance(module, (nn.Conv2d, nn.Linear)):
                fan_in = module.weight[0].numel()
                module.weight.copy_(randn(module.weight) / fan_in ** 0.5)
                if name.rsplit(".", 1)[-1] in ("q", "k"):
                    module.weight.mul_(1.5)
                if module.bias is not None:
                    module.bias.copy_(0.1 * randn(module.bias))
            elif isinstance(module, (GroupNorm, nn.GroupNorm, nn.LayerNorm)):
                module.weight.copy_(1.0 + 0.3 * randn(module.weight))
                module.bias.copy_(0.2 * randn(module.bias))
    return model


@pytest.fixture
def tiny_config() -> VAEConfig:
    return VAEConfig(**TINY)


@pytest.fixture
def tiny_vae(tiny_config) -> AutoencoderKL:
    return reinit_(AutoencoderKL(tiny_config)).eval()
