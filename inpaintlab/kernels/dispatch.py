"""Backend choice for the fused ops: "torch", "triton" or "auto".

Nothing is probed at import; `available()` checks CUDA and Triton on its first call and caches the answer.
"""
from __future__ import annotations

import functools
import importlib.util
import logging
import os

import torch

BACKENDS = ("torch", "triton", "auto")
log = logging.getLogger(__name__)


def interpreting() -> bool:
    """True when Triton kernels run on CPU tensors under Triton's interpreter (TRITON_INTERPRET=1)."""
    return os.environ.get("TRITON_INTERPRET", "0") == "1"


@functools.lru_cache(maxsize=None)
def triton_installed() -> bool:
    return importlib.util.find_spec("triton") is not None


@functools.lru_cache(maxsize=None)
def available() -> bool:
    """True when the Triton kernels can run compiled: CUDA is present and Triton is importable."""
    return torch.cuda.is_available() and triton_installed()


@functools.lru_cache(maxsize=None)
def log_once(message: str, *args: object) -> None:
    """Debug-log a backend decision once per process: it is taken on every op call, thousands of times a run."""
    log.debug(message, *args)


def check_backend(backend: str) -> str:
    if backend not in BACKENDS:
        raise ValueError(f"unknown kernel backend {backend!r}; expected one of {', '.join(BACKENDS)}")
    return backend


def resolve(backend: str, x: torch.Tensor) -> str:
    """Return "torch" or "triton" for an op on tensor `x`.

    "auto" picks Triton for CUDA tensors when it is installed and torch otherwise (logged at debug level).
    "triton" is an explicit request: it fails loudly instead of falling back.
    """
    check_backend(backend)
    if backend == "torch":
        return "torch"
    if backend == "auto":
        if x.is_cuda and available():
            return "triton"
        log_once("kernels: auto -> torch for %s tensors", x.device.type)
        return "torch"
    if not triton_installed():
        raise RuntimeError("kernels='triton' was requested but triton is not installed (pip install triton)")
    if not (x.is_cuda or interpreting()):
        raise RuntimeError(
            f"kernels='triton' needs CUDA tensors (got {x.device.type}); "
            "set TRITON_INTERPRET=1 before importing triton to run the kernels on the CPU under Triton's interpreter"
        )
    return "triton"
