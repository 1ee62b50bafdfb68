"""`UpscalerDir`: A1111's upscaler names ("R-ESRGAN 4x+", "4x-UltraSharp", "SwinIR 4x" …) resolved to files.

A1111 v1.10 lists "None", "Lanczos", "Nearest", then one entry per model file by file stem (folders `ESRGAN`,
`RealESRGAN`, `DAT`, `SwinIR` … under `models/`) plus the built-in names of the official release files ("R-ESRGAN
4x+", "DAT x2", "DAT x3", "DAT x4" …), sorted case-insensitively. Here a folder (searched recursively) plays the role
of `models/`: a built-in name resolves to its official file name anywhere below it, any other name to a file with
that stem. Nothing is downloaded.

The file's folder also decides how A1111 runs it: files under `SwinIR/` or `ScuNET/` use the averaging tiling,
files under `ESRGAN/`, `RealESRGAN/`, `DAT/`, `HAT/` the grid tiling; elsewhere the architecture decides.
"""
from __future__ import annotations

from pathlib import Path

import torch

from .errors import UpscalerError
from .load import SCUNET_TILE, UpscalerModel, load
from .scale import BUILTIN

EXTENSIONS = (".pth", ".pt", ".safetensors")
# A1111's built-in names → official file stems (Real-ESRGAN release names, KAIR's ESRGAN as saved by A1111, …).
KNOWN_FILES = {
    "R-ESRGAN 4x+": "RealESRGAN_x4plus",
    "R-ESRGAN 4x+ Anime6B": "RealESRGAN_x4plus_anime_6B",
    "R-ESRGAN 2x+": "RealESRGAN_x2plus",
    "R-ESRGAN General 4xV3": "realesr-general-x4v3",
    "R-ESRGAN General WDN 4xV3": "realesr-general-wdn-x4v3",
    "R-ESRGAN AnimeVideo": "realesr-animevideov3",
    "ESRGAN_4x": "ESRGAN_4x",
    "SwinIR 4x": "003_realSR_BSRGAN_DFOWMFC_s64w8_SwinIR-L_x4_GAN",
    "DAT x2": "DAT_x2", "DAT x3": "DAT_x3", "DAT x4": "DAT_x4",
    "ScuNET GAN": "scunet_color_real_gan", "ScuNET PSNR": "scunet_color_real_psnr",
}
# A1111's DAT upscaler lists every local file by its stem and, besides, the three release models by name (downloaded
# to DAT/DAT_x2.pth … on first use): with DAT_x2.pth present, both "DAT_x2" and "DAT x2" are in the dropdown.
_ALSO_BY_STEM = {"DAT_x2", "DAT_x3", "DAT_x4"}
_AVERAGE_FOLDERS = {"swinir", "scunet"}
_GRID_FOLDERS = {"esrgan", "realesrgan", "dat", "hat"}


class UpscalerDir:
    """The upscaler files below `root`, addressable by A1111's names."""

    def __init__(self, root: str | Path):
        self.root = Path(root)
        if not self.root.is_dir():
            raise UpscalerError(f"upscaler folder not found: {self.root}")
        self._files = sorted(p for p in self.root.rglob("*") if p.is_file() and p.suffix.lower() in EXTENSIONS)
        self._cache: dict[tuple[Path, str, torch.dtype], UpscalerModel] = {}

    def names(self) -> list[str]:
        """A1111's dropdown order: None, Lanczos, Nearest, then every model name, case-insensitively sorted."""
        stems = {p.stem for p in self._files}
        by_stem = {v: k for k, v in KNOWN_FILES.items()}
        models = {by_stem.get(s, s) for s in stems} | (stems & _ALSO_BY_STEM)
        return list(BUILTIN) + sorted(models, key=str.lower)

    def path(self, name: str) -> Path:
        """The file an upscaler name stands for (exact stem first, then case-insensitive, as the SD upscale API)."""
        known = next((v for k, v in KNOWN_FILES.items() if k.lower() == name.lower()), None)
        stem = KNOWN_FILES.get(name, known or name)
        for match in (lambda p: p.stem == stem, lambda p: p.stem.lower() == stem.lower()):
            found = [p for p in self._files if match(p)]
            if found:
                return found[0]
        hint = f" (expected a file named {stem}.pth)" if known else ""
        raise UpscalerError(f"no upscaler named {name!r} in {self.root}{hint}; known: {', '.join(self.names())}")

    def load(self, name: str, *, device: str | torch.device = "cpu", dtype: torch.dtype = torch.float32
             ) -> UpscalerModel | str:
        """The loaded model for `name` (cached), or the name itself for "None", "Lanczos" and "Nearest"."""
        if name in BUILTIN:
            return name
        path = self.path(name)
        key = (path, str(device), dtype)
        if key not in self._cache:
            model = load(path, device=device, dtype=dtype)
            folders = {p.name.lower() for p in path.relative_to(self.root).parents}
            if folders & _AVERAGE_FOLDERS:
                model.tiling = "average"
                # A1111's ScuNET upscaler runs whatever file its folder holds with SCUNET_tile/_overlap
                model.tile_defaults = SCUNET_TILE if "scunet" in folders else None
            elif folders & _GRID_FOLDERS:
                model.tiling, model.tile_defaults = "grid", None
            model.name = name
            self._cache[key] = model
        return self._cache[key]
