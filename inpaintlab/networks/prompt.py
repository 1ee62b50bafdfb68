"""A1111 v1.10 extra-network prompt tags: `<lora:name:te:unet:dyn>`, `<lora:name:te=0.5:unet=1>`, `<lyco:…>`.

Every `<word:args>` tag is cut out of the positive prompt (unknown kinds too); only the first prompt of a batch says
which networks are active; the negative prompt is never parsed, so a tag there stays text. The tags stay in the
infotext's prompt.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Callable
from ..errors import SettingsError

_TAG = re.compile(r"<(\w+):([^>]+)>")
LORA_TAGS = ("lora", "lyco")  # `lyco` is A1111's alias of the same handler


@dataclass(frozen=True)
class ExtraNetworkParams:
    """The ':'-separated items of one tag; items with one '=' are named, everything else positional (A1111)."""

    items: tuple[str, ...]

    @property
    def positional(self) -> list[str]:
        return [item for item in self.items if len(item.split("=", 2)) != 2]

    @property
    def named(self) -> dict[str, str]:
        named = {}
        for item in self.items:
            parts = item.split("=", 2)
            if len(parts) == 2:
                named[parts[0]] = parts[1]
        return named


def parse_prompt(prompt: str) -> tuple[str, dict[str, list[ExtraNetworkParams]]]:
    """(prompt with every tag replaced by "", {tag kind: [params, ...]} in order of appearance)."""
    found: dict[str, list[ExtraNetworkParams]] = {}

    def cut(m: re.Match) -> str:
        found.setdefault(m[1], []).append(ExtraNetworkParams(tuple(m[2].split(":"))))
        return ""

    return _TAG.sub(cut, prompt), found


def parse_prompts(prompts: list[str]) -> tuple[list[str], dict[str, list[ExtraNetworkParams]]]:
    """Strip the tags of every prompt; the extra-network data of the first prompt alone is kept (A1111)."""
    texts, data = [], {}
    for i, prompt in enumerate(prompts):
        text, found = parse_prompt(prompt)
        texts.append(text)
        if i == 0:
            data = found
    return texts, data


def strip_networks(prompt: str) -> str:
    """The prompt as A1111 encodes it: every `<word:args>` tag removed, nothing else touched."""
    return _TAG.sub("", prompt)


@dataclass(frozen=True)
class NetworkTag:
    """One `<lora:…>` tag: the name as written, text-encoder and UNet multipliers, DyLoRA rank (or None)."""

    name: str
    te: float = 1.0
    unet: float = 1.0
    dyn: int | None = None


def _number(text: str, kind, tag: str, what: str):
    try:
        return kind(text)
    except ValueError:
        raise SettingsError(f"<{tag}>: the {what} {text!r} is not a number") from None


def lora_tags(data: dict[str, list[ExtraNetworkParams]]) -> list[NetworkTag]:
    """The Lora handler's arguments: `lora` tags, then `lyco` tags (A1111 groups args by tag kind in the order each
    kind first appears); te defaults to 1, unet to te; named te=/unet=/dyn= override positional values."""
    tags = []
    for kind in sorted((k for k in data if k in LORA_TAGS), key=list(data).index):
        for params in data[kind]:
            positional, named = params.positional, params.named
            text = f"{kind}:{':'.join(params.items)}"
            if not positional:
                raise SettingsError(f"<{text}>: no network name")
            te = _number(positional[1], float, text, "te multiplier") if len(positional) > 1 else 1.0
            te = _number(named["te"], float, text, "te multiplier") if "te" in named else te
            unet = _number(positional[2], float, text, "unet multiplier") if len(positional) > 2 else te
            unet = _number(named["unet"], float, text, "unet multiplier") if "unet" in named else unet
            dyn = _number(positional[3], int, text, "dyn rank") if len(positional) > 3 else None
            dyn = _number(named["dyn"], int, text, "dyn rank") if "dyn" in named else dyn
            tags.append(NetworkTag(positional[0], te, unet, dyn))
    # A1111 keeps one network object per name: a name given twice is applied twice with the last tag's values.
    last = {tag.name: tag for tag in tags}
    return [last[tag.name] for tag in tags]


def other_tags(data: dict[str, list[ExtraNetworkParams]]) -> list[str]:
    """Tag kinds that were cut from the prompt but are not networks inpaintlab applies (e.g. `hypernet`)."""
    return [kind for kind in data if kind not in LORA_TAGS]


def set_lora_weight(prompt: str, name: str, weight: float) -> str:
    """`prompt` with the multiplier(s) of `<lora:name:…>` set to `weight` (te and unet), or the tag appended."""
    pattern = re.compile(r"<(lora|lyco):" + re.escape(name) + r"(:[^>]*)?>")
    tag = f"<lora:{name}:{weight:g}>"
    if pattern.search(prompt):
        return pattern.sub(lambda m: f"<{m[1]}:{name}:{weight:g}>", prompt)
    return f"{prompt} {tag}" if prompt else tag


def parse_lora_hashes(text: str) -> dict[str, str]:
    """The infotext's `Lora hashes` value ("name: hash12, name: hash12") as {name: hash12}."""
    hashes = {}
    for part in text.split(","):
        name, sep, value = part.strip().partition(":")
        if sep:
            hashes[name.strip()] = value.strip()
    return hashes


_LORA_NAME = re.compile(r"<lora:([^:]+):")


def rename_by_hashes(prompt: str, hashes: dict[str, str], find: Callable[[str], str | None]) -> str:
    """A1111's paste of an infotext: `<lora:name:` becomes the local network whose short hash the infotext recorded
    for that name (`find(hash12)` → local name, or None to keep the tag as it is)."""

    def replace(m: re.Match) -> str:
        shorthash = hashes.get(m[1])
        local = find(shorthash) if shorthash else None
        return m[0] if local is None else f"<lora:{local}:"

    return _LORA_NAME.sub(replace, prompt)
