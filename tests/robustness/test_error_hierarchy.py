"""One base exception, `inpaintlab.InpaintlabError`, with a subclass per kind of problem; the classes that existed
before keep working (they are subclasses, and everything is still a ValueError)."""
import pytest

import inpaintlab
from inpaintlab import (CheckpointError, FileError, InfotextError, InpaintlabError, MissingFileError, SettingsError)
from inpaintlab.checkpoint import CheckpointError as CheckpointErrorFromCheckpoint
from inpaintlab.checkpoint import read_state_dict
from inpaintlab.cli import CommandError
from inpaintlab.errors import WriteError
from inpaintlab.infotext import settings_from_infotext
from inpaintlab.networks import NetworkError
from inpaintlab.samplers import resolve_sampler
from inpaintlab.settings import coerce
from inpaintlab.study.spec import load_spec


def test_hierarchy():
    assert CheckpointErrorFromCheckpoint is CheckpointError
    for cls in (SettingsError, FileError, InfotextError, CheckpointError, MissingFileError, WriteError, NetworkError,
                CommandError):
        assert issubclass(cls, InpaintlabError) and issubclass(cls, ValueError)
    assert issubclass(CheckpointError, FileError) and issubclass(NetworkError, CheckpointError)
    assert issubclass(CommandError, SettingsError)
    assert issubclass(MissingFileError, FileNotFoundError) and issubclass(WriteError, OSError)
    assert {"InpaintlabError", "SettingsError", "FileError", "CheckpointError", "InfotextError"} <= set(inpaintlab.__all__)


@pytest.mark.parametrize("call, kind, text", [
    (lambda p: coerce("cfg_scale", "loud"), SettingsError, "cfg_scale must be a number"),
    (lambda p: resolve_sampler("Nope"), SettingsError, "unknown sampler 'Nope'"),
    (lambda p: load_spec({"model": "m"}), SettingsError, "sweep spec: 'image' is required"),
    (lambda p: read_state_dict(p / "none.safetensors"), MissingFileError, "checkpoint file not found"),
    (lambda p: read_state_dict(p / "x.ckpt"), MissingFileError, "x.ckpt"),
    (lambda p: (p / "bad.safetensors").write_bytes(b"123") and read_state_dict(p / "bad.safetensors"),
     CheckpointError, "bad.safetensors: not a valid safetensors file"),
    (lambda p: settings_from_infotext("p\nSteps: 1, Seed: 1, Frob: 2", strict=True), InfotextError, "Frob"),
    (lambda p: settings_from_infotext("only a prompt"), InfotextError, "only a prompt"),
])
def test_each_kind_is_caught_by_the_base_class(tmp_path, call, kind, text):
    with pytest.raises(InpaintlabError) as error:
        call(tmp_path)
    assert isinstance(error.value, kind) and text in str(error.value) and "\n" not in str(error.value)


def test_messages_are_one_line_whatever_they_wrap():
    assert str(FileError("x.pt: torch says\n\n  first\n\tsecond")) == "x.pt: torch says first second"
