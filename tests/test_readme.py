"""The README's install and test commands are the ones CI runs, and its main job is a real subcommand."""
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _ci_commands() -> dict[str, str]:
    lines = (ROOT / ".ci" / "run").read_text().splitlines()
    return {line[len("# README: "):]: lines[i + 1] for i, line in enumerate(lines) if line.startswith("# README: ")}


def test_ci_runs_the_readme_commands():
    readme = (ROOT / "README.md").read_text()
    commands = _ci_commands()
    assert set(commands) == {"install", "test"}
    for command in commands.values():
        assert command in readme, f"README does not show the command CI runs: {command}"


def _walkthrough(heading: str = "## Command line") -> list[str]:
    """The commands of the first bash block under `heading` in the README, continuation lines joined."""
    readme = (ROOT / "README.md").read_text()
    section = readme[readme.index(heading):]
    start = section.index("```bash\n") + len("```bash\n")
    block = section[start:section.index("\n```", start)]
    return block.replace("\\\n", " ").splitlines()


def test_readme_walkthrough_runs_command_by_command(tmp_path, monkeypatch):
    """On a tiny checkpoint, from an empty folder: every command succeeds and the replay is bit-identical."""
    import shlex

    from PIL import Image

    from inpaintlab.cli import main

    import json
    import shutil

    monkeypatch.chdir(tmp_path)
    shutil.copytree(ROOT / "examples", tmp_path / "examples")  # the walkthrough runs from the repository root
    commands = _walkthrough()
    assert [c.split()[:2] for c in commands][:2] == [["inpaintlab", "tiny"], ["inpaintlab", "txt2img"]]
    for command in commands:
        argv = shlex.split(command, comments=True)
        if argv[0] == "inpaintlab":
            assert main(argv[1:]) == 0, command
        else:
            assert argv[:2] == ["python", "-c"], command
            exec(argv[2], {})
    first, replay = Image.open("out/00001-2976823394.png"), Image.open("replay/00000-2976823394.png")
    assert first.info["parameters"] == replay.info["parameters"]
    assert first.tobytes() == replay.tobytes()
    # The LoRA, ControlNet and sweep examples ran on the tiny files.
    assert "Lora hashes: \"tiny-detail: " in Image.open("out/lora/00000-2976823394.png").info["parameters"]
    assert "ControlNet 0: " in Image.open("out/controlnet/00000-2976823394.png").info["parameters"]
    rows = [json.loads(line) for line in open("out/sweep/results.jsonl")]
    assert len(rows) == 8 and not any(p.name.endswith(".tmp") for p in Path("out/sweep").rglob("*"))
    # The grid-replay example runs on the walkthrough's files: a spec sweep's grid replays cell for cell, bit for bit.
    replay_commands = _walkthrough("### Replaying an A1111 X/Y/Z grid")
    assert [c.split()[:2] for c in replay_commands] == [["inpaintlab", "sweep"]] * 2
    for command in replay_commands:
        assert main(shlex.split(command, comments=True)[1:] + ["--no-progress"]) == 0, command
    assert "Script: X/Y/Z plot, X Type: Steps" in Image.open("grid-replay/grid.png").info["parameters"]
    swept = {Image.open(p).tobytes() for p in Path("out/sweep2/cells").glob("*.png")}
    replayed = [Image.open(p).tobytes() for p in sorted(Path("grid-replay").glob("cell-*.png"))]
    assert len(replayed) == 4 and set(replayed) == swept  # two cells may coincide (the tiny model)


def test_readme_inpaint_anything_walkthrough_runs_command_by_command(tmp_path, monkeypatch):
    """Segments, a mask from a click and from SAM 2 prompts, an inpaint, a one-go inpaint and LaMa's clean, tiny files."""
    import json
    import shlex

    import numpy as np
    from PIL import Image

    from inpaintlab.cli import main

    monkeypatch.chdir(tmp_path)
    commands = _walkthrough("## Inpaint Anything")
    assert [c.split()[1] for c in commands] == ["tiny", "txt2img", "segment", "mask", "mask", "inpaint", "inpaint",
                                               "clean"]
    for command in commands:
        argv = shlex.split(command, comments=True)
        assert argv[0] == "inpaintlab", command
        assert main(argv[1:]) == 0, command
    records = json.loads(Path("seg/masks.json").read_text())
    assert len(records) == len(list(Path("seg/masks").glob("*.png"))) > 0
    for name in ("mask.png", "mask-points.png"):
        mask = np.asarray(Image.open(name))
        assert mask.shape[:2] == (64, 64) and set(np.unique(mask)) <= {0, 255} and mask.any(), name
    image = np.asarray(Image.open("out/00000-1.png").convert("RGB"))
    keep = np.asarray(Image.open("mask.png")) == 0
    for name in ("out/00001-1.png", "out/00002-1.png"):
        assert "Steps: 4" in Image.open(name).info["parameters"], name
    cleaned = np.asarray(Image.open("cleaned/00000-1_lama.png").convert("RGB"))
    assert cleaned.shape == image.shape and (cleaned[keep] == image[keep]).all()


def test_readme_python_example_saves_with_infotext():
    readme = (ROOT / "README.md").read_text()
    python = readme[readme.index("```python\nimport inpaintlab"):]
    python = python[:python.index("\n```")]
    assert "result.save(" in python and ".images[0].save(" not in python
    assert "-m inpaintlab.inpaint" not in readme and "-m inpaintlab sweep" in readme


def test_cited_paths_exist_and_nothing_cites_the_private_spec():
    """Docstrings, comments and docs cite behaviour or files the repository holds, never missing design notes."""
    import re

    cited = re.compile(r"\bspec/[\w.-]+\.md|\bdocs/[\w./-]+\.\w+")
    problems = []
    for path in [*ROOT.glob("inpaintlab/**/*.py"), *ROOT.glob("benchmarks/**/*.py"), *ROOT.glob("tests/**/*.py"),
                 *ROOT.glob("examples/**/*"), *ROOT.glob("*.md"), *ROOT.glob("benchmarks/*.md")]:
        if path.suffix not in (".py", ".md", ".json", ".toml") or path.name == "test_readme.py":
            continue
        for match in cited.finditer(path.read_text(encoding="utf-8")):
            if match.group(0).startswith("spec/") or not (ROOT / match.group(0)).exists():
                problems.append(f"{path.relative_to(ROOT)}: {match.group(0)}")
    assert not problems, problems
    assert "tutorial" not in (ROOT / "inpaintlab" / "demo.py").read_text()
    assert "--tiny" not in (ROOT / "inpaintlab" / "tiny.py").read_text()


def test_lpips_extra_and_an_install_line_that_keeps_torch():
    setup = (ROOT / "setup.py").read_text()
    assert '"metrics": ["lpips==0.1.4"]' in setup
    readme = (ROOT / "README.md").read_text()
    assert 'pip install torch==2.13.0 -e ".[metrics]"' in readme and "pip install lpips" not in readme


def test_readme_says_how_to_get_the_cpu_wheel_before_the_install_line():
    from packaging.specifiers import SpecifierSet

    readme = (ROOT / "README.md").read_text()
    cpu = "pip install torch==2.13.0 --index-url https://download.pytorch.org/whl/cpu"
    install = _ci_commands()["install"]
    assert cpu in readme and readme.index(cpu) < readme.index(install)
    # the install line's pin keeps the CPU wheel: a local version label satisfies the plain pin
    assert "2.13.0+cpu" in SpecifierSet("==2.13.0")


def test_readme_agrees_with_the_code():
    """Statements that contradicted the code: soft inpainting's samplers, what `tiny` writes and where, the families."""
    from inpaintlab.cli import build_parser
    from inpaintlab.tiny import TINY_FAMILY_FILES, TINY_FILES, TINY_LORAS, TINY_TOOL_FILES

    readme = (ROOT / "README.md").read_text()
    assert "Soft inpainting and\n  Differential Diffusion are refused" not in readme
    assert "soft inpainting runs with them" in readme and "soft inpainting runs with all 20" in readme
    n = len(TINY_FILES) + len(TINY_FAMILY_FILES) + len(TINY_TOOL_FILES) + len(TINY_LORAS)
    assert n == 12 and "writes tiny random-weight files (fourteen," in readme  # and the SAM v1 file, the detector
    assert "tiny/" not in readme.replace("tiny/lora", "")  # one folder name throughout: models/
    assert "--model tiny/" not in readme
    setup = (ROOT / "setup.py").read_text()
    assert "SDXL" in setup.split("description=")[1].split("\n")[0]
    sub = build_parser()._subparsers._group_actions[0].choices["inpaint"]
    assert "SDXL" in sub.format_help()


def test_every_error_class_the_readme_lists_ends_in_inpaintlab_error():
    """The Errors section's promise: one base class, also for the segmentation, LaMa, upscaler and script packages."""
    import importlib
    import re

    import inpaintlab

    readme = (ROOT / "README.md").read_text()
    errors = readme[readme.index("## Errors"):]
    errors = errors[:errors.index("\n## ")]
    modules = ["inpaintlab.errors", "inpaintlab.segment", "inpaintlab.segment.sam2", "inpaintlab.lama",
               "inpaintlab.upscalers", "inpaintlab.scripts", "inpaintlab.detect.loader", "inpaintlab.hires"]
    found = {}
    for name in modules:
        module = importlib.import_module(name)
        # dir() and getattr: packages import their exports on first use (inpaintlab._lazy)
        found.update({k: getattr(module, k) for k in dir(module)
                      if k.endswith("Error") and isinstance(getattr(module, k), type)})
    listed = set(re.findall(r"`(\w+Error)`", errors)) - {"FileNotFoundError", "OSError", "ValueError"}
    assert {"SegmentError", "Sam2Error", "LamaError", "DetectorError", "UpscalerError", "HiresError", "ScriptError",
            "OutpaintError"} <= listed
    for name in listed:
        assert issubclass(found[name], inpaintlab.InpaintlabError), name
