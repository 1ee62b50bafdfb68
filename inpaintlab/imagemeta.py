"""The infotext an image carries, read as A1111's PNG Info reads it (`images.read_info_from_image`).

* PNG: the `parameters` text chunk (tEXt, zTXt or iTXt, anywhere in the file; the last one wins, as in PIL);
* JPEG and WebP (and a PNG with an eXIf chunk): the EXIF `UserComment`, which A1111 writes as "UNICODE\\0" plus
  UTF-16 (big-endian) text; when present and non-empty it takes precedence, as in A1111;
* otherwise a JPEG/GIF `comment`.

PNG chunks are walked here rather than through PIL so that no pixel data is decoded: reading the text of a large or
damaged picture costs neither time nor memory, and a text chunk whose checksum fails is refused instead of being
read as a silently different prompt. Every failure is a `FileError` (or `InfotextError` when the image simply
carries no infotext) whose one-line message names the file.
"""
from __future__ import annotations

import os
import struct
import zlib
from pathlib import Path

from .errors import FileError, InfotextError, MissingFileError

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
USER_COMMENT = 0x9286  # EXIF UserComment, in the Exif IFD
EXIF_IFD = 0x8769
_MAX_TEXT = 16 << 20  # a decompressed text chunk larger than this is not an infotext (and would cost memory)
_PREFIXES = {b"ASCII\0\0\0": "ascii", b"JIS\0\0\0\0\0": "shift_jis", b"UNICODE\0": "utf_16_be"}


def read_infotext(path: str | os.PathLike) -> str:
    """The infotext stored in an image file (PNG, JPEG, WebP, ...); see the module docstring."""
    path = Path(path)
    if not path.is_file():
        raise MissingFileError(f"{path}: file not found" if not path.exists() else f"{path}: not a file")
    try:
        with open(path, "rb") as handle:
            head = handle.read(8)
    except OSError as error:
        raise FileError(f"{path}: cannot read ({error.strerror or error})") from None
    text = _png_infotext(path) if head == PNG_SIGNATURE else _pil_infotext(path)
    if text is None:
        raise InfotextError(f"{path}: no 'parameters' infotext in this image")
    return text


def decode_user_comment(data: bytes | str) -> str:
    """EXIF UserComment bytes -> text, as A1111 does: piexif's charset prefixes, else the bytes as UTF-8."""
    if isinstance(data, str):
        return data
    encoding = _PREFIXES.get(bytes(data[:8])) if len(data) >= 8 else None
    if encoding is None:
        return bytes(data).decode("utf8", errors="ignore")
    return bytes(data[8:]).decode(encoding, errors="replace")


def encode_user_comment(text: str) -> bytes:
    """What A1111 stores (`piexif.helper.UserComment.dump(text, encoding="unicode")`)."""
    return b"UNICODE\0" + text.encode("utf_16_be")


def exif_user_comment(exif_bytes: bytes) -> str | None:
    """The UserComment text of raw EXIF data (with or without the "Exif\\0\\0" header); None if absent/unreadable."""
    from PIL import Image

    try:
        exif = Image.Exif()
        exif.load(exif_bytes)
        comment = exif.get_ifd(EXIF_IFD).get(USER_COMMENT)
    except Exception:  # noqa: BLE001 - damaged EXIF: A1111 then reads no comment (piexif's OSError)
        return None
    if comment is None:
        return None
    return decode_user_comment(comment)


def _png_infotext(path: Path) -> str | None:
    data = path.read_bytes()
    position, parameters, exif_comment, damage = 8, None, None, None
    while position + 8 <= len(data):
        length, kind = struct.unpack(">I4s", data[position:position + 8])
        body = data[position + 8:position + 8 + length]
        crc = data[position + 8 + length:position + 12 + length]
        if len(body) < length or len(crc) < 4:
            damage = "truncated"
            break
        position += 12 + length
        if kind not in (b"tEXt", b"zTXt", b"iTXt", b"eXIf"):
            if kind == b"IEND":
                break
            continue
        if zlib.crc32(kind + body) != struct.unpack(">I", crc)[0]:
            raise FileError(f"{path}: damaged PNG ({kind.decode()} chunk checksum does not match)")
        if kind == b"eXIf":
            exif_comment = exif_user_comment(b"Exif\0\0" + body) or exif_comment
            continue
        key, text = _text_chunk(path, kind, body)
        if key == "parameters":
            parameters = text
    if parameters is None and exif_comment is None and damage:
        raise FileError(f"{path}: truncated PNG with no infotext before the damage")
    return exif_comment or parameters


def _text_chunk(path: Path, kind: bytes, body: bytes) -> tuple[str, str]:
    key, _, rest = body.partition(b"\0")
    key_text = key.decode("latin-1")
    try:
        if kind == b"tEXt":
            return key_text, rest.decode("latin-1")
        if kind == b"zTXt":
            return key_text, _inflate(rest[1:]).decode("latin-1")
        compressed, rest = rest[:1] == b"\1", rest[2:]
        _language, _, rest = rest.partition(b"\0")
        _translated, _, rest = rest.partition(b"\0")
        return key_text, (_inflate(rest) if compressed else rest).decode("utf-8")
    except (zlib.error, UnicodeDecodeError, ValueError) as error:
        if key_text != "parameters":
            return key_text, ""
        raise FileError(f"{path}: damaged PNG text chunk {key_text!r} ({error})") from None


def _inflate(data: bytes) -> bytes:
    inflater = zlib.decompressobj()
    out = inflater.decompress(data, _MAX_TEXT)
    if inflater.unconsumed_tail:
        raise ValueError(f"text larger than {_MAX_TEXT >> 20} MiB")
    return out


def _pil_infotext(path: Path) -> str | None:
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as image:  # headers only: the pixels are never decoded
            info = dict(image.info)
    except UnidentifiedImageError:
        raise FileError(f"{path}: not a readable image") from None
    except Exception as error:  # noqa: BLE001 - PIL raises many types for damaged headers
        raise FileError(f"{path}: damaged or truncated image ({error})") from None
    text = info.get("parameters")
    if "exif" in info:
        comment = exif_user_comment(info["exif"]) if isinstance(info["exif"], bytes) else None
        if comment:
            text = comment
    elif "comment" in info:
        comment = info["comment"]
        text = comment.decode("utf8", errors="ignore") if isinstance(comment, bytes) else str(comment)
    return text if isinstance(text, str) else None
