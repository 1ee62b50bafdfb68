"""Read YOLOv8 ``.pt`` files (a pickled Ultralytics model object) and ``.safetensors`` files, without Ultralytics.

An Ultralytics checkpoint pickles the whole ``DetectionModel``/``SegmentationModel`` object. The unpickler here
resolves only an allow-list of globals: torch's tensor rebuild functions and storages, ``OrderedDict`` and ``set``
are real; the Ultralytics and ``torch.nn`` module classes those files hold (and the few plain classes that sit
beside them: Ultralytics' argument namespace, paths, numpy scalars) become inert stand-ins that only keep the state
they are given. Any other global is refused before anything is built, so loading never runs code from the file. The
tensors are then read from the stand-ins' ``_parameters``/``_buffers``/``_modules``, giving Ultralytics' own
state-dict names (``model.0.conv.weight`` …).
"""
from __future__ import annotations

import codecs
import json
import logging
import pickle
import types
from collections import OrderedDict
from pathlib import Path
from typing import Any

import torch

from ..errors import InpaintlabError
from .model import SCALES, YOLOConfig, YOLOv8

log = logging.getLogger(__name__)


class DetectorError(InpaintlabError):
    """A detector file that cannot be read or does not hold a YOLOv8 detect/segment network."""


# Class names Ultralytics YOLOv8 detect/segment files pickle (module paths moved between releases, hence a prefix)
_ULTRALYTICS_CLASSES = frozenset({
    "DetectionModel", "SegmentationModel", "Conv", "Concat", "C2f", "Bottleneck", "SPPF", "DFL", "Proto", "Detect",
    "Segment", "IterableSimpleNamespace"})
_TORCH_NN_CLASSES = frozenset({
    ("torch.nn.modules.container", "Sequential"), ("torch.nn.modules.container", "ModuleList"),
    ("torch.nn.modules.conv", "Conv2d"), ("torch.nn.modules.conv", "ConvTranspose2d"),
    ("torch.nn.modules.batchnorm", "BatchNorm2d"), ("torch.nn.modules.activation", "SiLU"),
    ("torch.nn.modules.pooling", "MaxPool2d"), ("torch.nn.modules.upsampling", "Upsample"),
    ("torch.nn.modules.linear", "Identity")})
# Plain values some trained files carry in their metadata (train args, best fitness): kept inert as well
_OTHER_STAND_INS = frozenset({
    ("pathlib", "PosixPath"), ("pathlib", "WindowsPath"), ("numpy.core.multiarray", "scalar"),
    ("numpy._core.multiarray", "scalar"), ("numpy.core.multiarray", "_reconstruct"),
    ("numpy._core.multiarray", "_reconstruct"), ("numpy", "ndarray"), ("numpy", "dtype")})
_REAL = {
    ("torch._utils", "_rebuild_tensor_v2"): torch._utils._rebuild_tensor_v2,
    ("torch._utils", "_rebuild_parameter"): torch._utils._rebuild_parameter,
    ("torch._utils", "_rebuild_parameter_with_state"): torch._utils._rebuild_parameter_with_state,
    ("collections", "OrderedDict"): OrderedDict,
    ("builtins", "set"): set, ("__builtin__", "set"): set,
    ("builtins", "frozenset"): frozenset, ("__builtin__", "frozenset"): frozenset,
    ("_codecs", "encode"): codecs.encode,  # protocol-2 pickles spell bytes (e.g. a numpy scalar's) this way
}


class StandIn:
    """An inert object standing for a pickled class: it records its state and never runs anything."""
    pickled_name = ""

    def __init__(self, *args: Any, **kwargs: Any):
        self.args = args

    def __setstate__(self, state: Any) -> None:
        if isinstance(state, tuple) and len(state) == 2:  # (dict, slots) form
            state = {**(state[0] or {}), **(state[1] or {})}
        if isinstance(state, dict):
            self.__dict__.update(state)
        else:
            self.state = state


_stand_ins: dict[str, type] = {}


def _stand_in(module: str, name: str) -> type:
    full = f"{module}.{name}"
    if full not in _stand_ins:
        _stand_ins[full] = type(name, (StandIn,), {"pickled_name": full})
    return _stand_ins[full]


def _getattr_stand_in(obj: Any, name: str) -> StandIn:
    """Old Segment heads pickled ``getattr(Detect, 'forward')``: answer with a stand-in, looking nothing up."""
    return _stand_in("getattr", str(name))()


class RestrictedUnpickler(pickle.Unpickler):
    """``find_class`` allows exactly the globals listed above; anything else raises DetectorError."""

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) in _REAL:
            return _REAL[(module, name)]
        if module.startswith("ultralytics.") and name in _ULTRALYTICS_CLASSES:
            return _stand_in(module, name)
        if (module, name) in _TORCH_NN_CLASSES or (module, name) in _OTHER_STAND_INS:
            return _stand_in(module, name)
        if (module, name) in {("builtins", "getattr"), ("__builtin__", "getattr")}:
            return _getattr_stand_in
        raise DetectorError(f"refusing to load: the file references {module}.{name}, which a YOLOv8 detector "
                            "file does not hold")


# torch.load accepts any object with an Unpickler and load (its pickle_module)
_restricted_pickle = types.SimpleNamespace(Unpickler=RestrictedUnpickler, load=pickle.load, __name__="restricted")


def _collect(obj: Any, prefix: str, out: dict[str, torch.Tensor]) -> None:
    """Tensors of a stand-in module tree, named like ``nn.Module.state_dict`` names them."""
    d = getattr(obj, "__dict__", {})
    skip = d.get("_non_persistent_buffers_set", set())
    for group in ("_parameters", "_buffers"):
        for name, tensor in (d.get(group) or {}).items():
            if tensor is not None and name not in skip:
                out[prefix + name] = tensor.detach()
    for name, child in (d.get("_modules") or {}).items():
        if child is not None:
            _collect(child, f"{prefix}{name}.", out)


def _read_pt(path: Path) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    try:
        ckpt = torch.load(path, map_location="cpu", pickle_module=_restricted_pickle, weights_only=False)
    except DetectorError as error:
        raise DetectorError(f"{path}: {error}") from None
    except Exception as error:  # noqa: BLE001  a damaged or foreign file: one line naming it
        raise DetectorError(f"{path}: not a readable PyTorch file ({type(error).__name__}: {error})") from None
    model = ckpt.get("ema") or ckpt.get("model") if isinstance(ckpt, dict) else None
    if not isinstance(model, StandIn) or not model.pickled_name.endswith(("DetectionModel", "SegmentationModel")):
        raise DetectorError(f"{path}: no Ultralytics DetectionModel/SegmentationModel in this file")
    sd: dict[str, torch.Tensor] = {}
    _collect(model, "", sd)
    names = getattr(model, "names", None)
    meta = {"names": dict(names) if isinstance(names, dict) else None,
            "sppf_act": _sppf_act_class(model) != "Identity"}
    return sd, meta


def _sppf_act_class(model: StandIn) -> str:
    try:
        act = model._modules["model"]._modules["9"]._modules["cv1"]._modules["act"]
        return type(act).__name__
    except (AttributeError, KeyError, TypeError):
        return "SiLU"


def _read_safetensors(path: Path) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    from safetensors import SafetensorError, safe_open
    from safetensors.torch import load_file
    try:
        sd = load_file(str(path))
        with safe_open(str(path), "pt") as f:
            metadata = f.metadata() or {}
    except (SafetensorError, OSError, ValueError) as error:
        raise DetectorError(f"{path}: not a readable safetensors file ({error})") from None
    names = None
    if "names" in metadata:  # optional {"0": "face"} JSON, as inpaintlab's tiny detector writes it
        try:
            names = {int(k): str(v) for k, v in json.loads(metadata["names"]).items()}
        except (ValueError, AttributeError):
            names = None
    return sd, {"names": names, "sppf_act": True}


def config_from_state_dict(sd: dict[str, torch.Tensor], *, sppf_act: bool = True, source: str = "file") -> YOLOConfig:
    """Scale, class count and head type told from the tensor shapes (stem width, C2f depth, class conv, Proto)."""
    try:
        width = sd["model.0.conv.weight"].shape[0]
        depth = len({k.split(".")[3] for k in sd if k.startswith("model.2.m.")})
        nc = sd["model.22.cv3.0.2.weight"].shape[0]
    except KeyError as error:
        raise DetectorError(f"{source}: not a YOLOv8 detect/segment state dict (missing {error.args[0]})") from None
    for scale in SCALES:
        config = YOLOConfig(scale, nc, "model.22.proto.cv1.conv.weight" in sd, sppf_act)
        if config.channels(64) == width and config.repeats(3) == depth:
            return config
    raise DetectorError(f"{source}: stem width {width} and depth {depth} match no YOLOv8 scale (n/s/m/l/x)")


class Detector:
    """A loaded YOLOv8 network (``model``), its class names (id → name) and the file it came from."""

    def __init__(self, model: YOLOv8, names: dict[int, str], source: str = ""):
        self.model, self.names, self.source = model, names, source

    @property
    def segment(self) -> bool:
        return self.model.config.segment


def _channels_last_helps(device: torch.device) -> bool:
    """oneDNN convolutions on x86 CPUs run faster on channels-last weights (Ultralytics' predictor switches too)."""
    import platform

    return (device.type == "cpu" and platform.machine() in {"AMD64", "x86_64"}
            and torch.backends.mkldnn.is_available() and torch.backends.mkldnn.enabled)


def load_detector(path: str | Path, *, device: str | torch.device = "cpu", fuse: bool = True,
                  channels_last: bool | None = None) -> Detector:
    """Read a YOLOv8 ``.pt`` (restricted unpickler) or ``.safetensors`` file into a float32 eval-mode network.

    ``fuse`` folds BatchNorms into the convolutions, as Ultralytics does before predicting. ``channels_last``
    (default: on x86 CPUs with oneDNN) stores the weights channels-last, which only changes speed.
    """
    path = Path(path)
    if not path.is_file():
        raise DetectorError(f"{path}: no such file")
    sd, meta = _read_safetensors(path) if path.suffix == ".safetensors" else _read_pt(path)
    config = config_from_state_dict(sd, sppf_act=meta["sppf_act"], source=str(path))
    model = YOLOv8(config)
    if "model.0.bn.weight" not in sd and "model.0.conv.bias" in sd:  # a file saved after Ultralytics' fuse()
        model.fuse()
    sd = {k: v.float() for k, v in sd.items()}
    expected = model.state_dict()
    for key, tensor in sd.items():
        if key in expected and expected[key].shape != tensor.shape:
            raise DetectorError(f"{path}: {key} has shape {tuple(tensor.shape)}, expected "
                                f"{tuple(expected[key].shape)} for YOLOv8{config.scale}")
    missing, unexpected = sorted(set(expected) - set(sd)), sorted(set(sd) - set(expected))
    if missing or unexpected:
        raise DetectorError(f"{path}: keys do not match YOLOv8{config.scale} (missing {missing[:3]}, "
                            f"unexpected {unexpected[:3]})")
    model.load_state_dict(sd, strict=True)
    model = model.to(device).eval().requires_grad_(False)
    if fuse:
        model.fuse()
    if channels_last if channels_last is not None else _channels_last_helps(torch.device(device)):
        model.to(memory_format=torch.channels_last)
    names = meta["names"] or {i: str(i) for i in range(config.nc)}
    log.debug("loaded YOLOv8%s %s (%d classes) from %s", config.scale, "seg" if config.segment else "det",
              config.nc, path)
    return Detector(model, names, str(path))
