"""UNet tests run single-threaded: their tensors are tiny, and on a busy 2-core machine a second OpenMP thread that
gets descheduled stalls every small op (seen: 30 ms forwards taking seconds)."""
import pytest
import torch


@pytest.fixture(autouse=True)
def _one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
