"""Concurrent and faulty writes: two processes saving into one folder, a disk that fills up or a folder that turns
read-only mid-batch (simulated with failing os-level calls), and the output folders a failed run leaves."""
import errno
import multiprocessing
import os

import pytest
from PIL import Image

from inpaintlab import FileError, Result
from inpaintlab.cli import main
from inpaintlab.errors import WriteError
from inpaintlab.infotext import read_png_infotext


def _result(n, tag):
    images = [Image.new("RGB", (16, 16), (i * 20, 0, 0)) for i in range(n)]
    return Result(images=images, infotexts=[f"{tag} {i}\nSteps: 1, Seed: {i}, Size: 16x16" for i in range(n)],
                  seeds=list(range(n)))


def _save_many(folder, tag, rounds, start):
    start.wait()
    for _ in range(rounds):
        _result(2, tag).save(folder)


def test_two_processes_never_overwrite_each_other(tmp_path):
    context = multiprocessing.get_context("spawn")
    start = context.Event()
    workers = [context.Process(target=_save_many, args=(tmp_path, tag, 6, start)) for tag in ("first", "second")]
    for worker in workers:
        worker.start()
    start.set()
    for worker in workers:
        worker.join(120)
        assert worker.exitcode == 0
    images = sorted(tmp_path.glob("[0-9]*.png"))
    grids = sorted(tmp_path.glob("grid-*.png"))
    assert len(images) == 2 * 6 * 2 and len(grids) == 2 * 6
    # Every number is used once: no two files share A1111's counter, and nothing was replaced.
    assert sorted(int(p.name[:5]) for p in images) == list(range(24))
    assert sorted(int(p.name[5:9]) for p in grids) == list(range(12))
    texts = [read_png_infotext(p).split("\n")[0] for p in images]
    assert sorted(texts) == sorted([f"{tag} {i}" for tag in ("first", "second") for i in (0, 1)] * 6)
    assert not list(tmp_path.glob(".*"))  # no temporary file left


def test_a_taken_number_moves_on(tmp_path):
    (tmp_path / "00000-0.png").write_bytes(b"someone else's")
    paths = _result(1, "mine").save(tmp_path)
    assert [p.name for p in paths] == ["00001-0.png"]
    assert (tmp_path / "00000-0.png").read_bytes() == b"someone else's"


@pytest.mark.parametrize("code, reason", [(errno.ENOSPC, "No space left on device"),
                                          (errno.EROFS, "Read-only file system")])
def test_disk_full_or_read_only_mid_batch_keeps_what_was_written(tmp_path, monkeypatch, code, reason):
    real_link, calls = os.link, []

    def failing_link(src, dst, *args, **kwargs):
        calls.append(dst)
        if len(calls) == 3:  # the third file of the batch
            raise OSError(code, os.strerror(code))
        return real_link(src, dst, *args, **kwargs)

    monkeypatch.setattr(os, "link", failing_link)
    with pytest.raises(WriteError) as error:
        _result(4, "batch").save(tmp_path)
    message = str(error.value)
    assert "\n" not in message and "00002-2.png: cannot write" in message and reason in message
    assert "saved 2 of 5 files (the 2 written before it are kept)" in message
    assert sorted(p.name for p in tmp_path.iterdir()) == ["00000-0.png", "00001-1.png"]
    assert read_png_infotext(tmp_path / "00001-1.png").startswith("batch 1")


def test_write_failing_inside_the_file_leaves_no_partial_file(tmp_path, monkeypatch):
    real_write = os.write

    def full_disk(fd, data):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(Image.Image, "save", lambda self, fp, **kw: (fp.write(b"\x89PNG partial"), fp.flush(),
                                                                     full_disk(0, b"")))
    with pytest.raises(WriteError, match="00000-0.png: cannot write .No space left on device"):
        _result(1, "x").save(tmp_path)
    assert list(tmp_path.iterdir()) == []
    assert real_write is os.write


def test_read_only_folder_names_the_target_not_the_temporary_file(tmp_path, monkeypatch):
    import tempfile

    def refuse(*args, **kwargs):
        raise PermissionError(errno.EACCES, "Permission denied", str(tmp_path / ".x.png.abc123.tmp"))

    monkeypatch.setattr(tempfile, "mkstemp", refuse)
    with pytest.raises(FileError) as error:
        _result(1, "x").save(tmp_path / "x.png")
    assert str(error.value) == f"{tmp_path / 'x.png'}: cannot write (Permission denied)"


def test_failed_run_leaves_no_empty_output_folder(tmp_path, capsys):
    out = tmp_path / "new" / "out"
    args = ["txt2img", "--model", str(tmp_path / "missing.safetensors"), "--prompt", "p", "--out", str(out)]
    assert main(args) == 2
    assert "missing.safetensors" in capsys.readouterr().err
    assert not (tmp_path / "new").exists()
    kept = tmp_path / "kept"
    (kept / "old.png").parent.mkdir()
    (kept / "old.png").write_bytes(b"x")
    assert main(["txt2img", "--model", "nope", "--prompt", "p", "--out", str(kept / "sub")]) == 2
    assert sorted(p.name for p in kept.iterdir()) == ["old.png"]
