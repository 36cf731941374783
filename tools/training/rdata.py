"""A minimal reader for R's XDR serialization, enough for the text data that
Debian's ``r-cran-*`` packages ship (character vectors, lists, data frames).

Those packages are the only offline registry source of public-domain novels
(see :mod:`.english`); reading their data here keeps R itself out of the
build.
"""

from __future__ import annotations

import bz2
import gzip
import lzma
import struct
import zlib
from pathlib import Path
from typing import Any

_NIL, _SYMBOL, _PAIRLIST, _CHAR, _LOGICAL, _INTEGER, _REAL, _STRING, _LIST = 254, 1, 2, 9, 10, 13, 14, 16, 19
_EMPTY = {242, 251, 253}  # empty environment, missing argument, global environment
_REFERENCE = 255


class _Reader:
    """Walks one serialized object; ``item`` returns strings, lists, dicts
    (pairlists, and vectors with a ``names`` attribute) or None."""

    def __init__(self, buffer: bytes) -> None:
        if buffer[:2] != b"X\n":
            raise ValueError("not an R XDR serialization")
        self._buffer, self._at, self._symbols = buffer, 2, []
        version = self._int()
        self._int(), self._int()  # writer's R version, minimal reader version
        if version == 3:
            length = self._int()
            self._at += length  # native encoding name

    def _int(self) -> int:
        (value,) = struct.unpack_from(">i", self._buffer, self._at)
        self._at += 4
        return value

    def item(self) -> Any:
        flags = self._int()
        kind, has_attributes, has_tag = flags & 0xFF, flags & (1 << 9), flags & (1 << 10)
        if kind == _NIL or kind in _EMPTY:
            return None
        if kind == _SYMBOL:
            name = self.item()
            self._symbols.append(name)
            return name
        if kind == _REFERENCE:
            index = flags >> 8 or self._int()
            return self._symbols[index - 1]
        if kind == _CHAR:
            length = self._int()
            if length == -1:
                return None
            text = self._buffer[self._at : self._at + length].decode("utf-8", "replace")
            self._at += length
            return text
        if kind == _PAIRLIST:
            if has_attributes:
                self.item()
            tag = self.item() if has_tag else None
            found = {tag: self.item()}
            rest = self.item()
            if isinstance(rest, dict):
                found.update(rest)
            return found
        values = self._vector(kind)
        if has_attributes:
            attributes = self.item()
            if isinstance(attributes, dict) and "names" in attributes:
                return dict(zip(attributes["names"], values, strict=True))
        return values

    def _vector(self, kind: int) -> list[Any]:
        length = self._int()
        if kind in (_LOGICAL, _INTEGER, _REAL):
            code, size = ("d", 8) if kind == _REAL else ("i", 4)
            values = list(struct.unpack_from(f">{length}{code}", self._buffer, self._at))
            self._at += size * length
            return values
        if kind in (_STRING, _LIST):
            return [self.item() for _ in range(length)]
        raise ValueError(f"unsupported R object type {kind}")


def _blob(raw: bytes) -> bytes:
    """A lazy-load database entry: a 4-byte length, then zlib, or a type byte
    ('Z' xz, '2' bzip2, '0' none) and the payload."""
    method = raw[4:5]
    if method == b"Z":
        return lzma.decompress(raw[5:])
    if method == b"2":
        return bz2.decompress(raw[5:])
    if method == b"0":
        return raw[5:]
    return zlib.decompress(raw[4:])


def loads(buffer: bytes) -> Any:
    """One object from its serialized bytes."""
    return _Reader(buffer).item()


def lazy_load(data_dir: Path) -> dict[str, Any]:
    """Every object of a package's lazy-load database (``Rdata.rdx`` index
    plus ``Rdata.rdb`` blobs), by name."""
    index = loads(gzip.decompress((data_dir / "Rdata.rdx").read_bytes()))
    database = (data_dir / "Rdata.rdb").read_bytes()
    return {
        name: loads(_blob(database[offset : offset + length])) for name, (offset, length) in index["variables"].items()
    }


def rda(path: Path) -> dict[str, Any]:
    """The objects of a gzip ``.rda`` file (``RDX2``/``RDX3`` header, then a
    pairlist of name to object)."""
    return loads(gzip.decompress(path.read_bytes())[5:])
