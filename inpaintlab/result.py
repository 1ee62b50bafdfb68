"""What a generation returns (`Result`) and how it is saved: PNGs with their infotext, A1111's file counter."""
from __future__ import annotations

import dataclasses
from pathlib import Path

import torch
from PIL import Image

from .errors import SettingsError, WriteError


@dataclasses.dataclass
class Result:
    """What a generation returns: images plus every intermediate a study needs.

    images: final PIL images (after overlay / paste-back); infotexts: one A1111 infotext per image; seeds: per image.
    init_latent: init latents after masked content ([B,4,h,w], scaled); start_latent: the noised latent sampling starts
    from; samples: final latents after the last blend; latent_mask: [B,4,h,w], 1 = repainted (None without a mask);
    sigmas: the (truncated) schedule that was run (the integer timesteps for DDIM, DDIM CFG++, PLMS, UniPC);
    subseeds: per-image variation seeds (None when the variation strength is 0). repaint_mask: the binary
    (mode-applied) mask; overlay_mask: the mask of the final composite (255 = generated) of the first image,
    overlay_masks: one per image (soft inpainting builds one per image from how far its latent moved).
    """

    images: list[Image.Image]
    infotexts: list[str]
    seeds: list[int]
    subseeds: list[int] | None = None
    init_latent: torch.Tensor | None = None
    start_latent: torch.Tensor | None = None
    samples: torch.Tensor | None = None
    latent_mask: torch.Tensor | None = None
    sigmas: torch.Tensor | None = None
    repaint_mask: Image.Image | None = None
    overlay_mask: Image.Image | None = None
    overlay_masks: list[Image.Image] | None = None

    @property
    def infotext(self) -> str:
        return self.infotexts[0]

    def save(self, path_or_dir: str | Path) -> list[Path]:
        """Write the images as PNGs carrying their infotext (what A1111's PNG Info and `--from-png` read back).

        A path ending in `.png` takes the single image. Anything else is a folder (created if missing): each image
        becomes `NNNNN-<seed>.png` with A1111's 5-digit counter, and a batch of several images also gets A1111's
        grid, `grid-NNNN.png`, carrying the first image's infotext. Returns the written paths (images, then grid).
        """
        from .files import folder_lock, prepare_out_dir
        from .grid import image_grid
        from .infotext import save_png

        target = Path(path_or_dir)
        if target.suffix.lower() == ".png":
            if len(self.images) != 1:
                raise SettingsError(f"{target}: {len(self.images)} images need a folder, not one file name")
            return [save_png(self.images[0], target, self.infotexts[0])]
        out = prepare_out_dir(target, "output folder")
        paths: list[Path] = []
        jobs = [(image, infotext, f"{{:05d}}-{seed}.png", "[0-9][0-9][0-9][0-9][0-9]-*.png", 0, 5)
                for image, infotext, seed in zip(self.images, self.infotexts, self.seeds)]
        if len(self.images) > 1:
            jobs.append((None, self.infotexts[0], "grid-{:04d}.png", "grid-*.png", 5, 4))
        try:
            with folder_lock(out):
                for image, infotext, name, pattern, start, digits in jobs:
                    image = image_grid(self.images) if image is None else image
                    paths.append(_save_numbered(out, image, infotext, name, pattern, start, digits))
        except WriteError as error:
            kept = f" (the {len(paths)} written before it are kept)" if paths else ""
            raise WriteError(f"{error}; saved {len(paths)} of {len(jobs)} files{kept}") from error
        return paths


def _save_numbered(out: Path, image: Image.Image, infotext: str, name: str, pattern: str, start: int,
                   digits: int) -> Path:
    """Save under A1111's next free number; a number another process took meanwhile moves on to the next one."""
    from .infotext import save_png

    index = _next_index(out, pattern, start, digits)
    while True:
        try:
            return save_png(image, out / name.format(index), infotext, exclusive=True)
        except FileExistsError:
            index += 1


def _next_index(out: Path, pattern: str, start: int = 0, digits: int = 5) -> int:
    """A1111's file counter: one past the highest number found at `start` in names matching `pattern`."""
    numbers = [int(p.name[start:start + digits]) for p in out.glob(pattern)
               if p.name[start:start + digits].isdigit()]
    return max(numbers, default=-1) + 1
