"""English sentences from Python's own documentation: the standard
library's docstrings and the reference topics that ``help()`` shows
(``pydoc_data``).

Every machine that runs Python has this corpus, so the embedded checkpoints
can be rebuilt offline. The same interpreter version gives the same corpus;
other versions differ by the documentation they changed.
"""

from __future__ import annotations

import ast
import re
import sysconfig
import zlib
from functools import cache
from pathlib import Path

_SENTENCE_END = re.compile(r"(?<=[.!?])\s+(?=[A-Z])")
_PROSE = re.compile(r"^[A-Z][A-Za-z0-9 ,;:'\"()/-]*[A-Za-z)][.!?]$")


def _docstrings(path: Path) -> list[str]:
    try:
        tree = ast.parse(path.read_text(encoding="utf-8"))
    except (SyntaxError, UnicodeDecodeError, ValueError):
        return []
    nodes = [tree, *(n for n in ast.walk(tree) if isinstance(n, (ast.FunctionDef, ast.ClassDef, ast.AsyncFunctionDef)))]
    return [doc for node in nodes if (doc := ast.get_docstring(node))]


def _is_prose(sentence: str) -> bool:
    letters = sum(c.isalpha() for c in sentence)
    return bool(_PROSE.match(sentence)) and letters >= 0.75 * len(sentence.replace(" ", ""))


@cache
def sentences(min_words: int = 5, max_words: int = 40) -> tuple[str, ...]:
    """Distinct prose sentences, sorted so the order is the same on every run.

    Only capitalised sentences made mostly of letters with light punctuation
    are kept: code, tables and doctest lines would teach the models nothing
    about English.
    """
    from pydoc_data.topics import topics

    stdlib = Path(sysconfig.get_paths()["stdlib"])
    documents = [topics[name] for name in sorted(topics)]
    for path in sorted(stdlib.rglob("*.py")):
        if "test" not in path.parts and "site-packages" not in path.parts:
            documents += _docstrings(path)
    found: set[str] = set()
    for document in documents:
        for paragraph in document.split("\n\n"):
            text = " ".join(paragraph.split())
            for sentence in _SENTENCE_END.split(text):
                if min_words <= len(sentence.split()) <= max_words and _is_prose(sentence):
                    found.add(sentence)
    return tuple(sorted(found))


def is_held_out(sentence: str) -> bool:
    """A fixed tenth of the sentences, by a stable hash, never used for training."""
    return zlib.crc32(sentence.encode()) % 10 == 0


def split() -> tuple[list[str], list[str]]:
    """(training sentences, held-out sentences)."""
    train, held = [], []
    for sentence in sentences():
        (held if is_held_out(sentence) else train).append(sentence)
    return train, held
