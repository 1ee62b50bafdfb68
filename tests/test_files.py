"""Written files get the mode a plain open() gives under the caller's umask, and are still written atomically."""
import os
import stat

import pytest
from PIL import Image

from inpaintlab.files import atomic_path, prepare_out_dir, write_text_atomic
from inpaintlab.infotext import save_png
from inpaintlab.tiny import make_tiny_vae_file


@pytest.fixture(params=[0o022, 0o077, 0o002])
def umask(request):
    old = os.umask(request.param)
    yield request.param
    os.umask(old)


def _mode(path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


@pytest.mark.skipif(os.name != "posix", reason="POSIX file modes")
def test_files_get_the_umask_mode(tmp_path, umask):
    plain = tmp_path / "plain.txt"
    with open(plain, "w"):
        pass
    expected = _mode(plain)
    assert expected == 0o666 & ~umask
    png = save_png(Image.new("RGB", (8, 8)), tmp_path / "a.png", "x\nSteps: 1, Seed: 1, Size: 8x8")
    text = write_text_atomic(tmp_path / "rows.jsonl", "{}\n")
    vae = make_tiny_vae_file(tmp_path / "v.safetensors")
    assert [_mode(p) for p in (png, text, vae)] == [expected] * 3
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.png", "plain.txt", "rows.jsonl", "v.safetensors"]


def test_failed_write_leaves_nothing_and_keeps_the_old_file(tmp_path):
    target = tmp_path / "keep.txt"
    target.write_text("old")
    with pytest.raises(RuntimeError), atomic_path(target) as tmp:
        tmp.write_text("half")
        raise RuntimeError("interrupted")
    assert target.read_text() == "old" and [p.name for p in tmp_path.iterdir()] == ["keep.txt"]


def test_out_dir_under_a_file_is_refused(tmp_path):
    (tmp_path / "f.png").write_bytes(b"x")
    with pytest.raises(ValueError, match="cannot write there"):
        prepare_out_dir(tmp_path / "f.png" / "sub")
    assert prepare_out_dir(tmp_path / "new" / "deeper").is_dir()
