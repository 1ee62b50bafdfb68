"""What a generation command takes from its flags and from `--from-png`, checked before any model is loaded.

`gather_settings` merges the PNG's replay (`inpaintlab.replay`) with the explicit flags (flags win) and validates
them; `check_networks_and_controlnet` checks the files the prompt and the ControlNet unit need; `warn_model_hash`
says when the PNG was made with other weights. The command line (`inpaintlab.cli`) calls them in that order.
"""
from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

from . import settings as registry
from .checkpoint import legacy_model_hash
from .frontend import CommandError
from .infotext import parse_infotext, read_png_infotext


def paste_lora_names(prompt: str, fields: dict[str, str], lora_dir: str | None) -> str:
    """A1111's paste: `<lora:name:` tags become the local network whose hash the infotext's `Lora hashes` records."""
    if "Lora hashes" not in fields or lora_dir is None or not Path(lora_dir).is_dir():
        return prompt
    from .networks import NetworkLibrary, parse_lora_hashes, rename_by_hashes

    return rename_by_hashes(prompt, parse_lora_hashes(fields["Lora hashes"]), NetworkLibrary(lora_dir).name_for_hash)


def gather_settings(args) -> tuple[dict[str, Any], set[str]]:
    """Settings for a generation command: the PNG's (if --from-png), overridden by explicit flags, validated."""
    allowed = set(registry.for_command(args.command))
    settings: dict[str, Any] = {}
    problems: list[str] = []
    if args.from_png:
        from .replay import read_replay

        replay = read_replay(read_png_infotext(args.from_png))
        if replay.refused:
            raise CommandError(f"--from-png {args.from_png}: cannot be replayed: {replay.refused}")
        problems += [str(problem) for problem in replay.problems]
        stored = replay.settings
        if hasattr(args, "rng_source"):  # an explicit --rng-source wins and is checked as given
            stored = {**stored, "rng_source": args.rng_source}
        else:
            for note in replay.notes:
                print(f"inpaintlab: {note}", file=sys.stderr, flush=True)
        settings.update({k: v for k, v in stored.items() if k in allowed})
        if "prompt" in settings:
            settings["prompt"] = paste_lora_names(settings["prompt"], replay.fields, args.lora_dir)
    explicit = {k: v for k, v in vars(args).items() if k in allowed}
    for name in allowed:
        parts = registry.SETTINGS[name].parts
        given = {i: getattr(args, f"{name}_{part}") for i, part in enumerate(parts) if hasattr(args, f"{name}_{part}")}
        if given:
            # Each part flag replaces its element of the --from-png value (or of zeros).
            value = list(settings.get(name) or (0,) * len(parts))
            for i, part in given.items():
                value[i] = part
            explicit[name] = tuple(value)
    settings.update(explicit)
    if "prompt" not in settings:
        raise CommandError("--prompt is required (or --from-png)")
    problems += [p for name in ("prompt", "negative_prompt") if name in explicit
                 for p in registry.prompt_problems(explicit[name])]
    if problems:
        message = "settings inpaintlab does not apply (the result will differ): " + "; ".join(problems)
        if args.strict:
            raise CommandError(message + " (refused by --strict)")
        print(f"inpaintlab: warning: {message}", file=sys.stderr, flush=True)
    settings = registry.validate(settings, args.command)
    if explicit.get("fill_space") == "latent" and settings.get("masked_content", "original") != "fill":
        from .prepare import fill_space_ignored

        raise CommandError("--fill-space latent: " + fill_space_ignored(settings.get("masked_content", "original")))
    return settings, set(explicit)


def check_networks_and_controlnet(args, settings: dict[str, Any]) -> None:
    """What the prompt's `<lora:…>` tags and the ControlNet unit need, checked before any model is loaded: each tag's
    file in --lora-dir, the ControlNet file (also one named by a --from-png infotext), LaMa for inpaint_only+lama."""
    from .pipeline.conditioning import strip_comments
    from .networks import NetworkError, NetworkLibrary, lora_tags, parse_prompt

    tags = lora_tags(parse_prompt(strip_comments(settings.get("prompt", "")))[1])
    library = None
    for tag in tags:
        given = Path(tag.name)
        if given.suffix.lower() in (".safetensors", ".pt", ".ckpt") and given.is_file():
            continue
        if args.lora_dir is None:
            raise CommandError(f"<lora:{tag.name}:…> in the prompt names a LoRA file: pass --lora-dir, the folder that "
                               "holds it")
        library = library or NetworkLibrary(args.lora_dir)
        try:
            library.find(tag.name)
        except NetworkError as error:
            raise CommandError(f"<lora:{tag.name}:…>: {error}") from None
    check_refiner(args, settings)
    model = settings.get("controlnet")
    if model is None:
        if args.controlnet_lama:
            raise CommandError("--controlnet-lama is for a ControlNet unit (--controlnet with inpaint_only+lama)")
        return
    if isinstance(model, (str, Path)):
        from .controlnet.unit import controlnet_path

        path = controlnet_path(model)
        if not path.is_file():
            where = "--controlnet" if hasattr(args, "controlnet") else f"the ControlNet 0 entry of {args.from_png}"
            raise CommandError(f"ControlNet model {str(model)!r} (from {where}): file not found at {path}; pass "
                               "--controlnet FILE")
    lama = settings.get("controlnet_preprocessor") == "inpaint_only+lama"
    if lama and not args.controlnet_lama:
        raise CommandError("--controlnet-preprocessor inpaint_only+lama needs --controlnet-lama FILE, a LaMa generator "
                           "(e.g. `inpaintlab tiny`'s tiny-lama.safetensors)")
    if args.controlnet_lama and not lama:
        raise CommandError("--controlnet-lama is only used by --controlnet-preprocessor inpaint_only+lama")


def check_refiner(args, settings: dict[str, Any]) -> None:
    """The refiner file a setting names (a --from-png `Refiner: name [hash]` included), found before any model is
    loaded: as given, or `<name>.safetensors` in the working directory or --model's folder; the setting becomes its
    path."""
    value = settings.get("refiner_checkpoint")
    if not isinstance(value, (str, Path)):
        return
    from .errors import MissingFileError
    from .refiner.rows import find_refiner, refiner_name

    name = refiner_name(str(value))
    if name is None:
        settings["refiner_checkpoint"] = None
        return
    folders = (Path(args.model).parent,) if getattr(args, "model", None) else ()
    try:
        settings["refiner_checkpoint"] = str(find_refiner(name, folders))
    except MissingFileError as error:
        raise CommandError(str(error)) from None


def warn_model_hash(png: str, model: str, model_hash: str | None) -> None:
    """One warning line when the PNG's `Model hash` is not --model's: the replay runs, but with other weights."""
    stored = parse_infotext(read_png_infotext(png)).get("Model hash")
    if not stored or not model_hash:
        return
    ours = legacy_model_hash(model) if len(stored) == 8 else model_hash
    if stored.lower() != ours.lower():
        print(f"inpaintlab: warning: {png} was made with Model hash {stored}, but --model {model} has {ours}; "
              "the replay uses other weights and will differ", file=sys.stderr, flush=True)
