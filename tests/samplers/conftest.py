"""k-diffusion as a test oracle, loaded without its package ``__init__``.

k-diffusion's ``__init__`` imports training and evaluation modules (torchvision and more), and ``sampling.py``
imports scipy, torchdiffeq and torchsde at module level for samplers we do not compare against. So
``sampling.py`` and ``external.py`` are executed from their files inside a private package whose ``utils`` is a
stand-in with ``append_dims``; missing third-party modules are replaced by empty stand-ins only while the files
execute (their functions are never called by these tests), then removed again from ``sys.modules``.
"""
from __future__ import annotations

import importlib.util
import sys
import types
from pathlib import Path

import pytest
import torch

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
