"""JPEG and WebP infotexts (EXIF UserComment, as A1111 saves them) and damaged PNGs, read as A1111's PNG Info reads.

The EXIF block is built here byte by byte from the TIFF/EXIF layout (big-endian TIFF header, IFD0 pointing to the Exif
IFD, whose UserComment is "UNICODE\\0" + UTF-16-BE, what A1111 writes with piexif), independently of the reader.
"""
import struct
import zlib

import pytest
from PIL import Image

from inpaintlab import FileError, InfotextError, MissingFileError
from inpaintlab.cli import main
from inpaintlab.imagemeta import decode_user_comment
from inpaintlab.infotext import read_png_infotext, save_png

TEXT = "a café ☕ on a table\nNegative prompt: blurry\nSteps: 12, Sampler: Euler a, CFG scale: 6, Seed: 77, Size: 64x64"


def exif_bytes(comment: bytes) -> bytes:
    """TIFF big-endian: IFD0 with one entry (ExifIFD pointer), then the Exif IFD with one UserComment entry."""
    ifd0 = struct.pack(">H", 1) + struct.pack(">HHII", 0x8769, 4, 1, 26) + struct.pack(">I", 0)
    exif_ifd = struct.pack(">H", 1) + struct.pack(">HHII", 0x9286, 7, len(comment), 44) + struct.pack(">I", 0)
    tiff = b"MM\0\x2a" + struct.pack(">I", 8) + ifd0 + exif_ifd + comment
    assert len(b"MM\0\x2a") + 4 + len(ifd0) == 26 and 26 + len(exif_ifd) == 44
    return b"Exif\0\0" + tiff


@pytest.mark.parametrize("fmt", ["JPEG", "WEBP"])
def test_jpeg_and_webp_user_comment(tmp_path, fmt, capsys):
    path = tmp_path / f"a.{fmt.lower()}"
    Image.new("RGB", (16, 16), (10, 20, 30)).save(path, format=fmt, exif=exif_bytes(b"UNICODE\0" + TEXT.encode("utf-16-be")))
    assert read_png_infotext(path) == TEXT
    assert main(["info", str(path)]) == 0
    out = capsys.readouterr().out
    assert "Seed: 77" in out and "replayed by `inpaintlab txt2img --from-png`" in out


def test_user_comment_charsets_as_piexif():
    assert decode_user_comment(b"ASCII\0\0\0plain") == "plain"
    assert decode_user_comment(b"UNICODE\0" + "é".encode("utf-16-be")) == "é"
    # No known prefix: A1111 falls back to the bytes as UTF-8, dropping what does not decode.
    assert decode_user_comment(b"\0\0\0\0\0\0\0\0abc") == "\0" * 8 + "abc"
    assert decode_user_comment(b"hi\xff") == "hi"


def test_exif_comment_wins_over_the_png_chunk_as_in_a1111(tmp_path):
    path = tmp_path / "both.png"
    Image.new("RGB", (8, 8)).save(path, exif=exif_bytes(b"UNICODE\0" + TEXT.encode("utf-16-be")))
    data = path.read_bytes()
    chunk = b"tEXt" + b"parameters\0other\nSteps: 1, Seed: 1, Size: 8x8"
    data = data[:33] + struct.pack(">I", len(chunk) - 4) + chunk + struct.pack(">I", zlib.crc32(chunk)) + data[33:]
    path.write_bytes(data)
    assert read_png_infotext(path) == TEXT


def test_png_text_after_the_pixels_and_compressed_itxt(tmp_path):
    path = save_png(Image.new("RGB", (8, 8)), tmp_path / "u.png", TEXT)  # non-Latin-1: an iTXt chunk
    assert read_png_infotext(path) == TEXT
    body = b"parameters\0\1\0\0\0" + zlib.compress(b"late\nSteps: 2, Seed: 3, Size: 8x8")
    chunk = struct.pack(">I", len(body)) + b"iTXt" + body + struct.pack(">I", zlib.crc32(b"iTXt" + body))
    plain = tmp_path / "late.png"
    Image.new("RGB", (8, 8)).save(plain)
    raw = plain.read_bytes()
    plain.write_bytes(raw[:-12] + chunk + raw[-12:])  # before IEND, after IDAT
    assert read_png_infotext(plain) == "late\nSteps: 2, Seed: 3, Size: 8x8"


def test_damaged_files_are_named(tmp_path, capsys):
    good = save_png(Image.new("RGB", (8, 8)), tmp_path / "good.png", "p\nSteps: 1, Seed: 1, Size: 8x8")
    data = good.read_bytes()
    (tmp_path / "cut.png").write_bytes(data[:30])
    with pytest.raises(FileError, match=r"cut\.png: truncated PNG"):
        read_png_infotext(tmp_path / "cut.png")
    flipped = bytearray(data)
    flipped[data.index(b"Steps") + 1] ^= 0x20
    (tmp_path / "flip.png").write_bytes(bytes(flipped))
    with pytest.raises(FileError, match=r"flip\.png: damaged PNG \(tEXt chunk checksum"):
        read_png_infotext(tmp_path / "flip.png")
    (tmp_path / "junk.jpg").write_bytes(b"\xff\xd8\xff" + b"\0" * 10)
    with pytest.raises(FileError, match=r"junk\.jpg"):
        read_png_infotext(tmp_path / "junk.jpg")
    with pytest.raises(MissingFileError, match="nope.png: file not found"):
        read_png_infotext(tmp_path / "nope.png")
    Image.new("RGB", (4, 4)).save(tmp_path / "plain.jpg")
    with pytest.raises(InfotextError, match=r"plain\.jpg: no 'parameters' infotext"):
        read_png_infotext(tmp_path / "plain.jpg")
    for args in (["info", str(tmp_path / "cut.png")], ["inpaint", "--model", "m", "--image", "i", "--mask", "m",
                                                      "--out", str(tmp_path / "o"), "--from-png",
                                                      str(tmp_path / "cut.png")]):
        assert main(args) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and "cut.png: truncated PNG" in err
    assert not (tmp_path / "o").exists()


def test_truncated_png_keeps_the_text_before_the_damage(tmp_path):
    good = save_png(Image.new("RGB", (64, 64)), tmp_path / "good.png", "p\nSteps: 1, Seed: 1, Size: 8x8")
    data = good.read_bytes()
    (tmp_path / "cut.png").write_bytes(data[:data.index(b"IDAT") + 10])
    assert read_png_infotext(tmp_path / "cut.png") == "p\nSteps: 1, Seed: 1, Size: 8x8"
