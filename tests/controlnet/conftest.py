"""ControlNet tests run single-threaded like the UNet's (tiny tensors on a shared machine)."""
import pytest
import torch


@pytest.fixture(autouse=True)
def _one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="session")
def tiny_controlnet(tmp_path_factory):
    """Path of the tiny ControlNet that matches the tiny checkpoints (.safetensors, control_model.* keys)."""
    from inpaintlab.tiny import make_tiny_controlnet

    return make_tiny_controlnet(tmp_path_factory.mktemp("tiny-cn") / "tiny-controlnet.safetensors")
