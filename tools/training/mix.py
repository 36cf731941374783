"""The training sentences of the embedded ELECTRA checkpoints: general English
(:mod:`.english`) with the docstrings of :mod:`.corpus`, so that words of code
documentation stay "original" too.
"""

from __future__ import annotations

import random
from functools import cache

from . import corpus, english

ENGLISH_SENTENCES = 150_000
# Docstrings are a quarter of the mix: their ~9800 training sentences are
# repeated, which a corpus that small needs to be learned at all.
DOCSTRING_SHARE = 0.25


@cache
def training_sentences() -> tuple[str, ...]:
    """The mix, in a fixed order (sampling draws from it by index)."""
    docstrings, _ = corpus.split()
    wanted = round(ENGLISH_SENTENCES * DOCSTRING_SHARE / (1 - DOCSTRING_SHARE))
    repeats, rest = divmod(wanted, len(docstrings))
    return (
        *english.training_sentences(ENGLISH_SENTENCES),
        *(docstrings * repeats),
        *random.Random("mix/docstrings").sample(docstrings, rest),
    )
