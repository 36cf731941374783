"""Builds the committed everyday-English held-out sets of :mod:`.everyday`.

Sources, kept out of training (the corpus uses neither package, and any
line found verbatim in the training text is dropped):

* ``wordnet-base`` (Debian; WordNet 3.0 licence, BSD-like): the example
  sentences quoted in the glosses, e.g. "hunger gave their faces a sunken
  look".
* ``chatterbot-corpus`` 1.3.3 (PyPI; BSD): lines of its everyday dialogue
  categories, e.g. "Good morning, how are you?".

Run ``python -m t5electra.tools.training.heldout`` to rebuild; the choice is
deterministic (by a stable hash of each sentence), and the replaced-token
examples are drawn by the training replacer with a fixed seed.
"""

from __future__ import annotations

import json
import random
import re
import subprocess
import sys
import tempfile
import zipfile
import zlib
from collections.abc import Iterable, Iterator
from pathlib import Path

from . import corpus, electra, english, everyday, mix

UNALTERED_COUNT = 300
REPLACED_COUNT = 600
CHATTERBOT_SHARE = 0.2
REPLACEMENT_SEED = 20261203
CHATTERBOT = "chatterbot-corpus==1.3.3"
# Everyday categories, not the ones about the bot itself or computing.
CHATTERBOT_CATEGORIES = (
    "conversations",
    "emotion",
    "food",
    "gossip",
    "greetings",
    "health",
    "history",
    "humor",
    "literature",
    "money",
    "movies",
    "politics",
    "psychology",
    "science",
    "sports",
    "trivia",
)
_PLAIN = re.compile(r"[A-Za-z0-9 ,;:'.!?-]+")


def wordnet_examples(gloss_lines: Iterable[str]) -> Iterator[str]:
    """The quoted examples after the ``|`` of WordNet ``data.*`` lines."""
    for line in gloss_lines:
        if not line.startswith("  ") and " | " in line:
            yield from re.findall(r'"([^"]+)"', line.split(" | ", 1)[1])


def chatterbot_lines(yaml: str) -> Iterator[str]:
    """The dialogue lines (``- text`` and ``- - text`` items) of a chatterbot
    corpus file, read without a YAML parser."""
    for line in yaml.splitlines():
        if found := re.match(r"^\s*-\s+(?:-\s+)?(.*)$", line):
            yield found.group(1).strip().strip("\"'")


def _candidates(lines: Iterable[str], min_words: int) -> list[str]:
    """Distinct plain sentences, in a fixed order given by a stable hash."""
    kept = {s for s in lines if len(s.split()) >= min_words and _PLAIN.fullmatch(s)}
    return sorted(kept, key=lambda s: (zlib.crc32(s.encode()), s))


def _chatterbot_files(cache_dir: Path) -> Iterator[str]:
    with tempfile.TemporaryDirectory(dir=cache_dir) as scratch:
        command = [sys.executable, "-m", "pip", "download", "--no-deps", "-q", "-d", scratch, CHATTERBOT]
        subprocess.run(command, check=True)
        (wheel,) = Path(scratch).glob("*.whl")
        with zipfile.ZipFile(wheel) as archive:
            for category in CHATTERBOT_CATEGORIES:
                yield archive.read(f"chatterbot_corpus/data/english/{category}.yml").decode()


def build(cache_dir: Path | None = None) -> None:
    cache_dir = cache_dir or english.default_cache()
    cache_dir.mkdir(parents=True, exist_ok=True)
    wordnet = english.unpack("wordnet-base", cache_dir) / "usr/share/wordnet"
    glosses = (
        line for part in ("noun", "verb", "adj", "adv") for line in (wordnet / f"data.{part}").open(encoding="latin-1")
    )
    training_text = "\n".join([*english.all_sentences(cache_dir), *corpus.sentences()]).lower()

    def unseen(found: list[str], count: int) -> list[str]:
        return [s for s in found if s.lower() not in training_text][:count]

    total = UNALTERED_COUNT + REPLACED_COUNT
    from_chatterbot = round(total * CHATTERBOT_SHARE)
    chat = unseen(
        _candidates((s for f in _chatterbot_files(cache_dir) for s in chatterbot_lines(f)), 4), from_chatterbot
    )
    examples = unseen(_candidates(wordnet_examples(glosses), 5), total - len(chat))
    # Each set takes its share of both sources.
    chat_cut = round(len(chat) * UNALTERED_COUNT / total)
    examples_cut = UNALTERED_COUNT - chat_cut
    unaltered = sorted(chat[:chat_cut] + examples[:examples_cut])
    to_replace = sorted(chat[chat_cut:] + examples[examples_cut:])
    everyday.HELDOUT_DIR.mkdir(exist_ok=True)
    everyday.UNALTERED.write_text("".join(f"{s}\n" for s in unaltered))
    replacer, rng = electra.Replacer(mix.training_sentences()), random.Random(REPLACEMENT_SEED)
    records = []
    for sentence in to_replace:
        corrupted = replacer.corrupt(sentence, rng)
        records.append({"original": sentence, "text": corrupted.text, "spans": [list(s) for s in corrupted.spans]})
    everyday.REPLACED.write_text("[\n" + ",\n".join(json.dumps(r) for r in records) + "\n]\n")


if __name__ == "__main__":
    build()
