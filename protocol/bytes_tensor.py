"""The Open Inference Protocol's BYTES tensors as raw contents carry them:
each element its length in 4 bytes, little endian, then its bytes. The
clients write and read them as the server does, so the layout is defined
here, beside the generated messages, once."""

from __future__ import annotations

import struct
from collections.abc import Iterable

_LENGTH = struct.Struct("<I")


class MalformedBytes(ValueError):
    """Raw contents that are not a sequence of length-prefixed elements."""


def pack(elements: Iterable[bytes]) -> bytes:
    return b"".join(_LENGTH.pack(len(element)) + element for element in elements)


def unpack(raw: bytes) -> list[bytes]:
    elements, at = [], 0
    while at < len(raw):
        if at + _LENGTH.size > len(raw):
            raise MalformedBytes("a BYTES element's 4-byte length is cut short")
        (size,) = _LENGTH.unpack_from(raw, at)
        at += _LENGTH.size
        if at + size > len(raw):
            raise MalformedBytes(f"a BYTES element of {size} bytes runs past the end of the contents")
        elements.append(raw[at : at + size])
        at += size
    return elements
