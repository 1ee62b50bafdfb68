"""LoRA and LyCORIS networks (A1111's built-in Lora extension): `<lora:name:te:unet>` prompt tags and the
pipeline's `apply_networks` set are merged into the weights before any text is encoded; the infotext gets
`Lora hashes`. The merging is `inpaintlab.networks`."""
from __future__ import annotations

from pathlib import Path
from typing import Any

from ..networks import ActiveNetwork, NetworkError, NetworkLibrary, lora_tags, parse_prompt
from ..pipeline.conditioning import strip_comments
from ..pipeline.job import Job
from ..pipeline.technique import Technique

# `<lora:…>` / `<lyco:…>` tags and the `Lora hashes` they write are applied here (registered in techniques/rows.py).


class NetworksMixin:
    """The `Pipeline`'s network methods: `library`, `network_path`, `apply_networks`, `clear_networks`,
    `active_networks` (the pipeline holds `lora_dir`, `_library`, `_merger` and `_networks`)."""

    @property
    def library(self) -> NetworkLibrary:
        """The networks in `lora_dir`, listed on first use."""
        if self._library is None:
            self._library = NetworkLibrary(self.lora_dir)
        return self._library

    def network_path(self, name_or_path: str | Path) -> Path:
        """The file a network name (file stem or `ss_output_name` alias in `lora_dir`) or path refers to."""
        path = Path(name_or_path)
        if path.suffix.lower() in (".safetensors", ".pt", ".ckpt") and path.is_file():
            return path
        try:
            return self.library.find(str(name_or_path))
        except NetworkError:
            if self._library is not None and self.lora_dir is not None:
                self._library = NetworkLibrary(self.lora_dir)  # A1111 re-lists the directory when a name is missing
                return self.library.find(str(name_or_path))
            raise

    def apply_networks(self, networks: list[tuple]) -> None:
        """Merge networks into the UNet and text encoder: `[(path_or_name, te_weight, unet_weight[, dyn]), ...]`.

        Deltas are added in list order into the live weights, each time from a kept copy of the original weights, so
        calling it again (or `clear_networks()`) restores the base bit for bit. A name is looked up in `lora_dir`
        (file stem or `ss_output_name` alias). Prompt tags add their networks after these at each generation.
        """
        wanted = []
        for item in networks:
            if isinstance(item, (str, Path)):
                item = (item,)
            if not 1 <= len(item) <= 4:
                raise ValueError(f"apply_networks: expected (path_or_name, te_weight, unet_weight[, dyn]), got {item!r}")
            source, te, unet, dyn = (tuple(item) + (None, None, None))[:4]
            te = 1.0 if te is None else float(te)
            unet = te if unet is None else float(unet)
            path = self.network_path(source)
            wanted.append(ActiveNetwork(path, te, unet, None if dyn is None else int(dyn), Path(path).stem))
        self._merger.apply(wanted)
        self._networks = wanted

    def clear_networks(self) -> None:
        """Remove every merged network: all touched weights return to the checkpoint's, bit for bit."""
        self._networks = []
        self._merger.clear()

    @property
    def active_networks(self) -> list[ActiveNetwork]:
        """The networks merged into the weights right now (those of `apply_networks`, then the last prompt's)."""
        return list(self._merger.active)

    def _activate_prompt_networks(self, prompt: str) -> dict[str, str]:
        return activate_prompt_networks(self, prompt)


def activate_prompt_networks(pipe: Any, prompt: str) -> dict[str, str]:
    """Merge `apply_networks`' set plus the prompt's `<lora:…>` tags (A1111: the batch's first prompt decides);
    returns the infotext's {name: shorthash} for `Lora hashes`."""
    _, data = parse_prompt(strip_comments(prompt))
    wanted = list(pipe._networks)
    for tag in lora_tags(data):
        wanted.append(ActiveNetwork(pipe.network_path(tag.name), tag.te, tag.unet, tag.dyn, tag.name))
    files = pipe._merger.apply(wanted)
    hashes: dict[str, str] = {}
    for net, file in zip(wanted, files):
        if file.shorthash:
            hashes[net.name.replace(":", "").replace(",", "")] = file.shorthash
    return hashes


class Networks(Technique):
    """Always active: a prompt without tags still restores the weights of the previous job's networks."""

    name = "networks"
    order = 10

    def __init__(self) -> None:
        self.hashes: dict[str, str] = {}

    @classmethod
    def for_job(cls, job: Job) -> "Networks":
        return cls()

    def networks(self, job: Job) -> None:
        self.hashes = activate_prompt_networks(job.pipe, job.settings["prompt"])

    def infotext(self, job: Job, extra: dict[str, Any]) -> None:
        if self.hashes:  # A1111's `Lora hashes: "name: hash12, ..."`, after the keys set while the job ran
            extra["Lora hashes"] = ", ".join(f"{name}: {h}" for name, h in self.hashes.items())
