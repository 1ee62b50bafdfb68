"""controlnet-aux (0.0.10) modules as test-time references, imported under a private package name so that the
package's __init__ (which pulls in every annotator and their optional dependencies) is not executed."""
from __future__ import annotations

import importlib
import importlib.util
import sys
import types
from pathlib import Path

import pytest

_PACKAGE = "_controlnet_aux_ref"


def aux_module(name: str) -> types.ModuleType:
    """controlnet_aux.<name> (e.g. "util", "shuffle"), or a skip when controlnet-aux is absent."""
    if _PACKAGE not in sys.modules:
        spec = importlib.util.find_spec("controlnet_aux")
        if spec is None or spec.origin is None:
            pytest.skip("controlnet-aux (preprocessor reference) is not installed")
        package = types.ModuleType(_PACKAGE)
        package.__path__ = [str(Path(spec.origin).parent)]
        sys.modules[_PACKAGE] = package
    return importlib.import_module(f"{_PACKAGE}.{name}")
