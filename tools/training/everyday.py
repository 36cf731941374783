"""The committed held-out sets of everyday English, which measure whether the
embedded ELECTRA checkpoints take ordinary words for replacements.

They come from packages the training corpus never uses (WordNet's example
sentences and the chatterbot corpus's everyday dialogue, see
:mod:`.heldout`) and are committed as small files, so that tests need
nothing downloaded.
"""

from __future__ import annotations

import json
from functools import cache
from pathlib import Path

HELDOUT_DIR = Path(__file__).parent / "heldout"
UNALTERED = HELDOUT_DIR / "everyday_unaltered.txt"
REPLACED = HELDOUT_DIR / "everyday_replaced.json"


@cache
def unaltered() -> tuple[str, ...]:
    """Everyday sentences as written, for the share of words flagged."""
    return tuple(UNALTERED.read_text().splitlines())


@cache
def replaced() -> tuple[dict, ...]:
    """Other everyday sentences, each with ``original``, the ``text`` after
    the training replacer corrupted it (fixed seed) and the replaced words'
    character ``spans`` in ``text``."""
    return tuple(json.loads(REPLACED.read_text()))


def originals() -> list[str]:
    """The uncorrupted sentences of :func:`replaced`, for masked-word scores."""
    return [example["original"] for example in replaced()]
