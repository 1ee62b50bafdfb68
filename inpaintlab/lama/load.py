"""Reading LaMa generator weights: `ControlNetLama.pth` (flat `model.N...` keys), LaMa's Lightning `best.ckpt`
(`state_dict` with `generator.model.N...`, beside the discriminator and loss networks) or a `.safetensors` file with
either layout. Loading is strict and never runs code from the file.

Pickles are read with `torch.load(weights_only=True)`. A Lightning checkpoint may also pickle its training
hyper-parameters as objects of other libraries; weights_only refuses those, so such a file is read again by an
unpickler that rebuilds tensors with torch's own functions and turns every other object into an inert record (its
constructor arguments kept, nothing called). Only tensors are used from either.
"""
from __future__ import annotations

import pickle
import re
from pathlib import Path
from typing import Mapping

import torch

from .model import FFCResNetGenerator, LamaConfig, LamaError

PREFIXES = ("generator.", "model.generator.")
_SAFE_TORCH = re.compile(r"^torch(\.|$)")
_TORCH_CALLABLES = {("torch._utils", "_rebuild_tensor_v2"), ("torch._utils", "_rebuild_parameter"),
                    ("torch._utils", "_rebuild_parameter_with_state"), ("collections", "OrderedDict"),
                    ("torch", "device"), ("torch", "Size")}


class _Inert:
    """Stands in for any class a pickle names outside torch's tensor rebuilding: records, never executes."""

    def __init__(self, *args, **kwargs):
        self.args, self.kwargs = args, kwargs

    def __setstate__(self, state):
        self.state = state

    def __setitem__(self, key, value):  # dict subclasses are filled item by item
        self.__dict__.setdefault("items", {})[key] = value

    def append(self, value):  # list subclasses are filled item by item
        self.__dict__.setdefault("values", []).append(value)

    def extend(self, values):
        self.__dict__.setdefault("values", []).extend(values)


class _InertUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str):
        if (module, name) in _TORCH_CALLABLES or (_SAFE_TORCH.match(module) and name.endswith("Storage")) or (
                module == "torch" and name in ("float32", "float16", "bfloat16", "float64", "int64")):
            return super().find_class(module, name)
        return type(name, (_Inert,), {"__module__": "inert." + module})


class _InertPickleModule:
    Unpickler = _InertUnpickler
    load = staticmethod(lambda f, **kw: _InertUnpickler(f, **kw).load())


def read_lama_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    """The generator's tensors from a LaMa file, with the `generator.` prefix removed (see module docstring)."""
    path = Path(path)
    if not path.is_file():
        raise LamaError(f"LaMa file not found: {path}")
    if path.suffix.lower() == ".safetensors":
        from safetensors.torch import load_file

        try:
            obj = load_file(str(path))
        except Exception as e:  # noqa: BLE001  safetensors raises its own error types
            raise LamaError(f"{path}: not a valid safetensors file: {e}") from None
    else:
        obj = _read_pickle(path)
    return generator_state_dict(obj, str(path))


def _read_pickle(path: Path):
    # Checked first: torch.load hands a TorchScript archive to torch.jit.load, which would run the archive's code.
    if _is_torchscript(path):
        raise LamaError(f"{path}: a TorchScript archive (e.g. lama-cleaner's big-lama.pt) cannot be loaded without "
                        "running its code; use ControlNetLama.pth or LaMa's best.ckpt")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception:  # noqa: BLE001  UnpicklingError, RuntimeError, ... depending on the content
        try:
            return torch.load(path, map_location="cpu", weights_only=False, pickle_module=_InertPickleModule)
        except Exception as e:  # noqa: BLE001
            raise LamaError(f"{path}: not a readable LaMa checkpoint ({type(e).__name__}: "
                            f"{str(e).splitlines()[0] if str(e) else ''})") from None


def _is_torchscript(path: Path) -> bool:
    import zipfile

    if not zipfile.is_zipfile(path):
        return False
    with zipfile.ZipFile(path) as z:
        return any("/code/" in n or n.endswith("constants.pkl") for n in z.namelist())


def generator_state_dict(obj, source: str = "state dict") -> dict[str, torch.Tensor]:
    """Unwrap a Lightning `state_dict` level and the `generator.` prefix; keep only `model.N...` tensors."""
    while isinstance(obj, Mapping) and isinstance(obj.get("state_dict"), Mapping):
        obj = obj["state_dict"]
    if not isinstance(obj, Mapping):
        raise LamaError(f"{source}: holds a {type(obj).__name__}, not a LaMa state dict")
    for prefix in PREFIXES:
        if any(isinstance(k, str) and k.startswith(prefix + "model.") for k in obj):
            obj = {k[len(prefix):]: v for k, v in obj.items() if isinstance(k, str) and k.startswith(prefix)}
            break
    sd = {k: v for k, v in obj.items() if isinstance(k, str) and k.startswith("model.") and torch.is_tensor(v)}
    if "model.1.ffc.convl2l.weight" not in sd:
        raise LamaError(f"{source}: not a LaMa generator (no model.1.ffc.convl2l.weight, with or without a "
                        "generator. prefix)")
    return sd


def lama_config(sd: Mapping[str, torch.Tensor]) -> LamaConfig:
    """The generator's config from its shapes: widths, downsampling stages, residual blocks."""
    first = sd["model.1.ffc.convl2l.weight"]
    stages = sorted(int(k.split(".")[1]) for k in sd if re.fullmatch(r"model\.\d+\.ffc\.convl2l\.weight", k))
    blocks = {int(k.split(".")[1]) for k in sd if re.match(r"model\.\d+\.conv1\.", k)}
    last = max(int(k.split(".")[1]) for k in sd if k.endswith(".weight"))
    return LamaConfig(input_nc=int(first.shape[1]), output_nc=int(sd[f"model.{last}.weight"].shape[0]),
                      ngf=int(first.shape[0]), n_downsampling=len(stages) - 1, n_blocks=len(blocks))


def load_lama(path_or_state_dict, *, device: torch.device | str = "cpu",
              dtype: torch.dtype = torch.float32) -> FFCResNetGenerator:
    """A LaMa generator from a file or a state dict, loaded strictly (one-line LamaError on any mismatch)."""
    if isinstance(path_or_state_dict, Mapping):
        sd = generator_state_dict(path_or_state_dict)
    else:
        sd = read_lama_state_dict(path_or_state_dict)
    config = lama_config(sd)
    with torch.device("meta"):
        model = FFCResNetGenerator(config)
    expected = model.state_dict()
    missing = [k for k in expected if k not in sd]
    unexpected = [k for k in sd if k not in expected]
    shapes = [k for k, v in expected.items() if k in sd and tuple(sd[k].shape) != tuple(v.shape)]
    if missing or unexpected or shapes:
        problems = [f"{len(x)} {what} ({', '.join(x[:3])}{', ...' if len(x) > 3 else ''})"
                    for x, what in ((missing, "missing"), (unexpected, "unexpected"), (shapes, "mis-shaped")) if x]
        raise LamaError(f"LaMa generator ({config.ngf} features, {config.n_blocks} blocks) does not match the file: "
                        + "; ".join(problems))
    model = model.to_empty(device=device)
    model.load_state_dict(sd, strict=True)
    return model.to(dtype).eval().requires_grad_(False)
