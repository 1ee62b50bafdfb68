"""Package namespaces that import their submodules on first use (PEP 562).

`import inpaintlab`, the command line's parser, `inpaintlab info` and `--version` must not import torch (1-2 s):
a package whose public names live in torch modules lists them instead of importing them:

    lazy_package(__name__, {"load": ".load", "Predictor": ".predictor"})

`from inpaintlab.segment import load` then imports `.load` at that moment; any submodule (`inpaintlab.segment.masks`)
is reachable as an attribute too, as it was when the package imported everything, and `dir()` lists every name.
"""
from __future__ import annotations

import importlib
import sys
import types
from typing import Mapping


class LazyPackage(types.ModuleType):
    """A package module whose exports are imported on first access.

    Importing a submodule binds it on its package under its own name. Where the package exports a function or class
    of that same name (`segment.load`, the function in `segment/load.py`), the export keeps the name, as the eager
    `from .load import load` left it.
    """

    _lazy_exports: Mapping[str, str] = {}

    def __setattr__(self, name: str, value: object) -> None:
        if (name in self._lazy_exports and isinstance(value, types.ModuleType)
                and value.__name__ == f"{self.__name__}.{name}"):
            return
        super().__setattr__(name, value)

    def __getattr__(self, name: str) -> object:
        source = self._lazy_exports.get(name)
        if source is not None:
            value = getattr(importlib.import_module(source, self.__name__), name)
            self.__dict__[name] = value  # past __setattr__: the export itself, once
            return value
        if name.startswith("__"):
            raise AttributeError(f"module {self.__name__!r} has no attribute {name!r}")
        try:  # a submodule nobody imported yet (`inpaintlab.infotext` right after `import inpaintlab`)
            return importlib.import_module(f"{self.__name__}.{name}")
        except ModuleNotFoundError as error:
            if error.name != f"{self.__name__}.{name}":
                raise
        raise AttributeError(f"module {self.__name__!r} has no attribute {name!r}")

    def __dir__(self) -> list[str]:
        return sorted(set(self.__dict__) | set(self._lazy_exports))


def lazy_package(name: str, exports: Mapping[str, str]) -> None:
    """Make the package `name` (call with `__name__` from its `__init__`) import `exports` on first access:
    public name -> the submodule that defines it, relative (".load") or absolute."""
    module = sys.modules[name]
    module.__class__ = LazyPackage
    module._lazy_exports = dict(exports)
