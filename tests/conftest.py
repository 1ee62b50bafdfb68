"""Shared test set-up.

Triton's interpreter must be switched on before anything imports triton, so this runs first: on a machine
without CUDA the Triton kernels are tested on CPU tensors under TRITON_INTERPRET=1.
"""
import importlib.util
import os
import sys
import types
from pathlib import Path

import torch

if not torch.cuda.is_available():
    os.environ.setdefault("TRITON_INTERPRET", "1")

import pytest  # noqa: E402

torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))


def pytest_configure(config):
    config.addinivalue_line("markers", "cuda: needs a CUDA GPU (skipped otherwise)")


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    """With INPAINTLAB_REQUIRE_ORACLES=1 (set by CI) a skipped test fails, unless it needs a GPU: a reference
    implementation that failed to install must not turn the parity tests into silent skips."""
    outcome = yield
    report = outcome.get_result()
    if report.skipped and os.environ.get("INPAINTLAB_REQUIRE_ORACLES") == "1" and "cuda" not in item.keywords:
        reason = report.longrepr[-1] if isinstance(report.longrepr, tuple) else str(report.longrepr)
        report.outcome = "failed"
        report.longrepr = f"skipped while INPAINTLAB_REQUIRE_ORACLES=1: {reason}"


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


@pytest.fixture(scope="session")
def tiny_family_checkpoints(tmp_path_factory):
    """{"sd2", "sd2-v", "sdxl", "sdxl-inpainting": path} of tiny checkpoints in each family's single-file layout."""
    from inpaintlab.tiny import write_tiny_family_files

    paths = write_tiny_family_files(tmp_path_factory.mktemp("tiny-families"))
    return {p.name[len("tiny-"):-len(".safetensors")]: p for p in paths}


# --- k-diffusion as a test oracle, loaded without its package __init__ ---------------------------------------------
# k-diffusion's __init__ imports training and evaluation modules (torchvision and more), and sampling.py imports scipy,
# torchdiffeq and torchsde at module level for samplers we do not compare against. So sampling.py and external.py are
# executed from their files inside a private package whose `utils` is a stand-in with `append_dims`; missing
# third-party modules are replaced by empty stand-ins only while the files execute (their functions are never called
# by the tests), then removed again from sys.modules.

_PACKAGE = "_kdiffusion_oracle"


def _append_dims(x: torch.Tensor, target_dims: int) -> torch.Tensor:
    dims_to_append = target_dims - x.ndim
    if dims_to_append < 0:
        raise ValueError(f"input has {x.ndim} dims but target_dims is {target_dims}, which is less")
    return x[(...,) + (None,) * dims_to_append]


def _stand_in(name: str, **attrs) -> types.ModuleType:
    module = types.ModuleType(name)
    module.__dict__.update(attrs)
    return module


def _unavailable(*args, **kwargs):
    raise RuntimeError("stand-in for a k-diffusion dependency that is not installed")


def _load_kdiffusion():
    spec = importlib.util.find_spec("k_diffusion")
    if spec is None or not spec.submodule_search_locations:
        return None, "k-diffusion is not installed"
    root = Path(list(spec.submodule_search_locations)[0])
    if not (root / "sampling.py").is_file() or not (root / "external.py").is_file():
        return None, f"k-diffusion at {root} has no sampling.py/external.py"

    stand_ins = {}
    for name, attrs in {
        "scipy": {},
        "scipy.integrate": {"quad": _unavailable},
        "torchdiffeq": {"odeint": _unavailable},
        "torchsde": {"BrownianTree": _unavailable},
    }.items():
        try:
            __import__(name)
        except ImportError:
            stand_ins[name] = _stand_in(name, **attrs)
    if "scipy" in stand_ins:
        stand_ins["scipy"].integrate = stand_ins["scipy.integrate"]

    package = _stand_in(_PACKAGE, __path__=[])
    utils = _stand_in(f"{_PACKAGE}.utils", append_dims=_append_dims)
    package.utils = utils
    added = {_PACKAGE: package, f"{_PACKAGE}.utils": utils, **stand_ins}
    saved = {name: sys.modules.get(name) for name in stand_ins}
    sys.modules.update(added)
    try:
        modules = {}
        for name in ("sampling", "external"):
            full = f"{_PACKAGE}.{name}"
            mspec = importlib.util.spec_from_file_location(full, root / f"{name}.py")
            module = importlib.util.module_from_spec(mspec)
            sys.modules[full] = module
            mspec.loader.exec_module(module)
            setattr(package, name, module)
            modules[name] = module
    except Exception as exc:  # pragma: no cover - depends on the installed version
        return None, f"could not load k-diffusion sampling/external: {exc!r}"
    finally:
        for name, old in saved.items():
            if old is None:
                sys.modules.pop(name, None)
            else:
                sys.modules[name] = old
    return types.SimpleNamespace(**modules), None


_ORACLE = None


@pytest.fixture(scope="session")
def kdiff():
    """Namespace with k-diffusion's ``sampling`` and ``external`` modules; skips when they cannot be loaded."""
    global _ORACLE
    if _ORACLE is None:
        _ORACLE = _load_kdiffusion()
    oracle, reason = _ORACLE
    if oracle is None:
        pytest.skip(reason)
    return oracle
