"""What the command line and the demo share: one-line errors, the device and kernel checks done before a model is
loaded, and loading with the command line's model options. It sits on top of the library (the pipeline never imports
it) and below `cli` and `demo`, which import it (and not each other at import time)."""
from __future__ import annotations

from pathlib import Path
from typing import Any


class CommandError(ValueError):
    """A problem with the command line or its inputs, reported as one line."""


# --- checks done before any model is loaded -----------------------------------------------------------------------

def resolve_device(name: str | None) -> str:
    """The device to run on, checked against this torch build; CommandError with one line otherwise."""
    import torch

    if name is None:
        return "cuda" if torch.cuda.is_available() else "cpu"
    try:
        device = torch.device(name)
    except (RuntimeError, ValueError):
        raise CommandError(f"--device {name!r}: not a torch device (use cpu, cuda, cuda:N or mps)") from None
    if device.type == "cuda":
        if not torch.cuda.is_available():
            build = "a CPU-only torch build" if torch.version.cuda is None else "no CUDA GPU is visible"
            raise CommandError(f"--device {name}: CUDA is not available ({build}); use --device cpu")
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise CommandError(f"--device {name}: only {torch.cuda.device_count()} CUDA device(s) are visible")
    elif device.type == "mps":
        if not torch.backends.mps.is_available():
            raise CommandError(f"--device {name}: MPS is not available on this machine; use --device cpu")
    elif device.type != "cpu":
        raise CommandError(f"--device {name}: inpaintlab runs on cpu, cuda or mps")
    return name


def check_kernels(kernels: str, device: str) -> None:
    from .kernels.dispatch import interpreting, triton_installed

    if kernels != "triton":
        return
    if not triton_installed():
        raise CommandError("--kernels triton: triton is not installed (pip install triton)")
    if not device.startswith("cuda") and not interpreting():
        raise CommandError(f"--kernels triton needs a CUDA device (got {device}); set TRITON_INTERPRET=1 to run the "
                           "kernels on the CPU under Triton's interpreter, or use --kernels torch")


def _model_options(args) -> dict[str, Any]:
    import torch

    from .checkpoint import existing_file

    device = resolve_device(args.device)
    check_kernels(args.kernels, device)
    for what in ("model", "vae"):
        path = getattr(args, what)
        if path is None:
            continue
        try:
            existing_file(path)
        except FileNotFoundError:
            raise CommandError(f"--{what} {path}: file not found") from None
        except ValueError as error:  # a folder: the library's own message (diffusers folders named as such)
            raise CommandError(f"--{what} {error}") from None
    if args.embeddings_dir is not None and not Path(args.embeddings_dir).is_dir():
        raise CommandError(f"--embeddings-dir {args.embeddings_dir}: folder not found")
    if args.lora_dir is not None and not Path(args.lora_dir).is_dir():
        raise CommandError(f"--lora-dir {args.lora_dir}: folder not found")
    dtype = None if args.dtype == "file" else getattr(torch, args.dtype)
    return dict(device=device, dtype=dtype, kernels=args.kernels,
                embeddings_dir=args.embeddings_dir, lora_dir=args.lora_dir, allow_pickle=args.allow_pickle)


def _load(model: str, vae: str | None, options: dict[str, Any]):
    from .pipeline import load

    return load(model, vae, **options)
