"""Shared test set-up.

Triton's interpreter must be switched on before anything imports triton, so this runs first: on a machine
without CUDA the Triton kernels are tested on CPU tensors under TRITON_INTERPRET=1.
"""
import os

import torch

if not torch.cuda.is_available():
    os.environ.setdefault("TRITON_INTERPRET", "1")

import pytest  # noqa: E402

torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))


def pytest_configure(config):
    config.addinivalue_line("markers", "cuda: needs a CUDA GPU (skipped otherwise)")


def pytest_collection_modifyitems(config, items):
    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs a CUDA GPU")
    for item in items:
        if "cuda" in item.keywords:
            item.add_marker(skip)


# Tiny random-weight SD1 checkpoints in the real single-file layout (inpaintlab.tiny), written once per session.
# Tests must treat them as read-only; `inpaintlab.tiny.build_tiny_models(inpainting=..., seed=0)` returns the
# same networks in memory.
@pytest.fixture(scope="session")
def tiny_checkpoint(tmp_path_factory):
    """Path of a tiny 4-channel SD1 checkpoint (.safetensors, seed 0)."""
    from inpaintlab.tiny import make_tiny_checkpoint

    return make_tiny_checkpoint(tmp_path_factory.mktemp("tiny-sd1") / "tiny-sd1.safetensors")


@pytest.fixture(scope="session")
def tiny_inpainting_checkpoint(tmp_path_factory):
    """Path of a tiny 9-channel (inpainting) SD1 checkpoint (.safetensors, seed 0)."""
    from inpaintlab.tiny import make_tiny_checkpoint

    return make_tiny_checkpoint(tmp_path_factory.mktemp("tiny-sd1-inpainting") / "tiny-sd1-inpainting.safetensors",
                                inpainting=True)
