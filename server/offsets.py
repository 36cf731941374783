"""Character offsets in the unit a client's strings use.

The engines count Unicode code points (Python's string indices). A Go or
Rust client slices UTF-8 bytes, a Java or JavaScript client UTF-16 code
units, and the two disagree with code points as soon as a text holds an
accented letter (UTF-8) or an emoji outside the Basic Multilingual Plane
(both), which is where such clients' highlighting breaks.
"""

from __future__ import annotations

from collections.abc import Callable
from itertools import accumulate

Convert = Callable[[int], int]


def _width(unit: str) -> Callable[[str], int]:
    if unit == "utf8_byte":
        return lambda char: len(char.encode("utf-8"))
    if unit == "utf16_code_unit":
        return lambda char: 2 if ord(char) > 0xFFFF else 1
    raise ValueError(f"unknown offset unit {unit!r}")


def converter(text: str, unit: str) -> Convert:
    """Maps a code-point offset into ``text`` to an offset in ``unit``."""
    if unit == "code_point":
        return lambda offset: offset
    width = _width(unit)
    table = [0, *accumulate(width(char) for char in text)]
    return table.__getitem__
