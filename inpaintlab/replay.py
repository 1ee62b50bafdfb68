"""Reading any infotext for a replay, as A1111 v1.10's paste reads it, and saying what will differ.

`read_replay(text)` never refuses what it does not know. It returns the settings inpaintlab applies and one
`Problem` per thing it does not (an unknown key, an extension's key, a value it cannot use), each naming the key:

* old spellings: keys that differ from a known key only in case ("Denoising Strength", written by img2img before
  2022-09-08) are read as that key (an inpaintlab extension: A1111's paste is case-sensitive); other near misses
  are named with "did you mean";
* sampler names with the schedule folded in ("DPM++ 2M Karras", Forge's "Euler A SGMUniform") are split as A1111's
  `get_sampler_and_scheduler` splits them (sampler names matched ignoring case, an inpaintlab extension); a sampler
  A1111 does not know ("Euler A Turbo") is replayed with DPM++ 2M and a schedule it does not know with Automatic,
  as A1111's paste does;
* `Hypernet` / `Hypernet strength` become a `<hypernet:name:strength>` prompt tag (A1111's conversion);
* a `Size` that is not a multiple of 8 is replayed at the size A1111 generates (latents of height//8 x width//8);
* `Version` below v1.6.0 / v1.7.0-225 turns on A1111's backwards-compatibility options, named as not applied;
  Forge's `f...` versions, like A1111, turn on nothing;
* a value that cannot be used leaves the setting at its default, as a failed paste leaves A1111's component
  unchanged; the `Denoising strength` of a hires-fix txt2img picture is the second pass's (replayed by txt2img).

`settings_from_infotext(text, strict=True)` refuses (InfotextError) whatever `read_replay` reports.
"""
from __future__ import annotations

import dataclasses
import difflib
import re
from typing import Any, NamedTuple

from .infotext import parse_infotext, read_settings, replay_noise, unapplied
from .names import SAMPLER_NAMES, SCHEDULER_ALIASES, SCHEDULERS
from .settings import CROSS_CHECKS, INFOTEXT_KEYS, SETTINGS

HIRES_KEYS = ("Hires upscale", "Hires upscaler", "Hires resize", "Hires steps", "First pass size")
MASK_KEYS = ("Mask blur", "Mask mode", "Masked content", "Inpaint area", "Masked area padding",
             "Soft inpainting enabled", "Differential diffusion")
# What the run decides itself instead of refusing (GPU noise without CUDA is answered by the noise source).
_RUN_TIME_CHECKS = ("GPU noise needs CUDA",)


class Problem(NamedTuple):
    """Something in an infotext that the replay does not apply: the infotext key, and a description."""

    key: str
    text: str

    def __str__(self) -> str:
        return self.text


@dataclasses.dataclass
class Replay:
    """How an infotext replays. settings: `Pipeline` keyword arguments (with prompt, negative_prompt); origin:
    setting -> the infotext key it came from, or "absent" for A1111's value of a missing key; problems: what is not
    applied; command: the inpaintlab command that replays it; note: why that command, when it is a guess; refused:
    why it cannot be replayed at all (None when it can); notes: lines on how the replay runs on this machine (e.g.
    a noise source it has to substitute), printed by `info` and `--from-png`, logged by `settings_from_infotext`."""

    fields: dict[str, str]
    settings: dict[str, Any]
    origin: dict[str, str]
    problems: list[Problem]
    command: str
    note: str | None = None
    refused: str | None = None
    notes: list[str] = dataclasses.field(default_factory=list)  # one line each, on how the replay runs here


def _known_keys() -> set[str]:
    return {s.infotext for s in SETTINGS.values() if s.infotext} | set(INFOTEXT_KEYS) | {"Prompt", "Negative prompt"}


def _sampler_name(text: str) -> str | None:
    key = text.strip().lower()
    return next((name for name in SAMPLER_NAMES if name.lower() == key), None)


def _schedule_options() -> list[tuple[str, str]]:
    """(spelling, label) for every schedule: A1111's labels, names and aliases."""
    options = [(label, label) for label in SCHEDULERS.values()] + [(name, label) for name, label in SCHEDULERS.items()]
    return options + [("SGMUniform", "SGM Uniform")] + [(alias, label) for alias, label in SCHEDULER_ALIASES.items()]


def paste_sampler(sampler: str | None, schedule: str | None) -> tuple[str, str, list[str]]:
    """A1111's `get_sampler_and_scheduler` for pasting: (sampler, schedule label, notes on what was changed)."""
    notes = []
    labels = {spelling.lower(): label for spelling, label in _schedule_options()}
    found = "Automatic"
    if schedule is not None:
        found = labels.get(schedule.strip().lower(), "Automatic")
        if schedule.strip().lower() not in labels:
            notes.append(f"Schedule type: {schedule}: not an A1111 schedule; replayed with Automatic, as A1111 does")
    name = (sampler or "DPM++ 2M").strip()
    if _sampler_name(name) is None:
        for spelling, label in _schedule_options():
            if name.lower().endswith(" " + spelling.lower()) and _sampler_name(name[:-len(spelling) - 1]):
                name, found = name[:-len(spelling) - 1], label
                break
    canonical = _sampler_name(name)
    if canonical is None:
        notes.append(f"Sampler: {sampler}: not an A1111 sampler; replayed with DPM++ 2M, as A1111's paste does")
        canonical = "DPM++ 2M"
    return canonical, found, notes


def _version(text: str) -> tuple[int, int, int, int] | None:
    """A1111's `infotext_versions.parse_version`, as a comparable (major, minor, patch, post) tuple; None if
    unparsable (Forge's `f2.0.1v1.10.1-...`)."""
    match = re.match(r"([^-]+-[^-]+)-.*", text)
    text = match.group(1) if match else text
    match = re.fullmatch(r"v?(\d+)\.(\d+)(?:\.(\d+))?(?:-(\d+)|-?(?:rc|RC)[-.]?\d*)?", text.strip())
    if not match:
        return None
    post = int(match.group(4)) if match.group(4) else (-1 if re.search("rc", text, re.I) else 0)
    return int(match.group(1)), int(match.group(2)), int(match.group(3) or 0), post


def normalise(fields: dict[str, str]) -> tuple[dict[str, str], list[Problem]]:
    """A1111's paste conversions on parsed `fields` (a new dict); the problems they reveal."""
    fields, problems = dict(fields), []
    known = _known_keys()
    lowered = {key.lower(): key for key in known}
    for key in list(fields):
        if key not in known and key.lower() in lowered and lowered[key.lower()] not in fields:
            fields[lowered[key.lower()]] = fields.pop(key)
    if "Hypernet" in fields:
        tag = f"<hypernet:{fields.pop('Hypernet')}:{fields.pop('Hypernet strength', '1.0')}>"
        fields["Prompt"] = f"{fields.get('Prompt', '')} {tag}".strip()
    if "Sampler" in fields or "Schedule type" in fields:
        sampler, schedule, notes = paste_sampler(fields.get("Sampler"), fields.get("Schedule type"))
        problems += [Problem(note.split(":")[0], note) for note in notes]
        fields["Sampler"], fields["Schedule type"] = sampler, schedule
    size = re.fullmatch(r"\s*(\d+)\s*x\s*(\d+)\s*", fields.get("Size", ""))
    if size and (int(size.group(1)) % 8 or int(size.group(2)) % 8):
        width, height = int(size.group(1)) // 8 * 8, int(size.group(2)) // 8 * 8
        problems.append(Problem("Size", f"Size: {fields['Size']}: not a multiple of 8; replayed at {width}x{height}, "
                                        "the size A1111 generates (latents of height//8 x width//8)"))
        fields["Size"] = f"{width}x{height}"
    version = _version(fields.get("Version", ""))
    if version is not None:
        old = []
        if version < (1, 6, 0, -1) and "[" in fields.get("Prompt", ""):
            old.append("old prompt editing timelines")
        if version < (1, 6, 0, -1) and fields.get("Sampler") in ("DDIM", "PLMS"):
            old.append("pad conds v0")
        if version < (1, 7, 0, 225):
            old.append("alphas_cumprod downcast to fp16")
        if old:
            problems.append(Problem("Version", f"Version: {fields['Version']}: A1111 replays pictures this old with "
                                               f"{', '.join(old)}, which inpaintlab does not apply"))
    return fields, problems


def _hires(fields: dict[str, str]) -> bool:
    # A1111's img2img writes no hires key; mask keys beside one mean an inpaint whatever else it holds.
    return any(key in fields for key in HIRES_KEYS) and not any(key in fields for key in MASK_KEYS)


def guess_command(fields: dict[str, str]) -> tuple[str, str | None]:
    """The inpaintlab command that replays `fields`, and a note when the infotext cannot tell for sure."""
    if _hires(fields):
        return "txt2img", None  # with hires fix: its `Denoising strength` is the second pass's
    if any(key in fields for key in MASK_KEYS):
        return "inpaint", None
    if "Denoising strength" in fields:
        return "img2img", ("or `inpaintlab inpaint` with your mask: an A1111 inpaint at default mask settings and "
                           "no mask blur records no mask key")
    return "txt2img", None


def _problem(text: str) -> Problem:
    if text.startswith("prompt tag <"):
        return Problem(f"<{text[len('prompt tag <'):].split(':')[0]}:...> prompt tag", text)
    return Problem(text.split(": ")[0], text)


def read_replay(text_or_fields: str | dict[str, str]) -> Replay:
    """How an infotext replays (see the module docstring); never raises for what the infotext holds."""
    raw = parse_infotext(text_or_fields) if isinstance(text_or_fields, str) else dict(text_or_fields)
    fields, problems = normalise(raw)
    known = _known_keys()
    for item in unapplied(fields):
        problem = _problem(item)
        if problem.key == item and problem.key not in known:
            near = difflib.get_close_matches(problem.key, sorted(known), n=1, cutoff=0.8)
            if near:
                problem = Problem(problem.key, f"{problem.key} (did you mean {near[0]!r}?)")
        problems.append(problem)
    bad: list[str] = []
    settings, origin = read_settings(fields, bad)
    problems += [_problem(item) for item in bad]
    command, note = guess_command(fields)
    refused = None
    if not any(key not in ("Prompt", "Negative prompt") for key in raw):
        refused = "no generation parameters (only a prompt)"
    for name, check in CROSS_CHECKS.items():
        try:
            message = None if name in _RUN_TIME_CHECKS else check(settings)
        except ValueError as error:
            message = str(error)
        if message:
            refused = message
    # Quoted values may hold line breaks ("CFG scale: \"\\n\""); a warning stays one line.
    problems = [Problem(p.key, p.text.replace("\r", "\\r").replace("\n", "\\n")) for p in problems]
    settings, noise_note = replay_noise(settings, origin)  # "GPU" noise without CUDA: NV, said in one line
    return Replay(fields, settings, origin, problems, command, note, refused, [noise_note] if noise_note else [])
