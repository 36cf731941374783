"""The text-to-text tasks the embedded T5 checkpoint is trained on.

Each task is a prefixed prompt with one exactly-checkable answer, so that tests
can measure the served model by exact match instead of by eye. The tasks are
small on purpose: a model of a few MB learns them on two CPU cores in minutes.
"""

from __future__ import annotations

import random
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass

WORDS = [
    "apple",
    "river",
    "stone",
    "cloud",
    "garden",
    "window",
    "bridge",
    "candle",
    "forest",
    "mirror",
    "planet",
    "rocket",
    "silver",
    "table",
    "valley",
    "winter",
    "yellow",
    "anchor",
    "basket",
    "castle",
    "dragon",
    "engine",
    "feather",
    "guitar",
    "harbor",
    "island",
    "jacket",
    "kettle",
    "lemon",
    "meadow",
    "needle",
    "orange",
    "pencil",
    "quartz",
    "rabbit",
    "saddle",
    "tiger",
    "umbrella",
    "violin",
    "wagon",
    "zebra",
    "amber",
    "breeze",
    "copper",
    "desert",
    "ember",
    "falcon",
    "glacier",
    "hollow",
    "ivory",
    "jungle",
    "kernel",
    "lantern",
    "marble",
    "nectar",
    "olive",
    "pepper",
    "quiver",
    "ribbon",
    "shadow",
    "thunder",
    "velvet",
    "willow",
]

# English noun -> (German noun, grammatical gender).
NOUNS = {
    "dog": ("Hund", "m"),
    "cat": ("Katze", "f"),
    "house": ("Haus", "n"),
    "bird": ("Vogel", "m"),
    "child": ("Kind", "n"),
    "woman": ("Frau", "f"),
    "man": ("Mann", "m"),
    "car": ("Auto", "n"),
    "tree": ("Baum", "m"),
    "flower": ("Blume", "f"),
    "horse": ("Pferd", "n"),
    "teacher": ("Lehrer", "m"),
    "book": ("Buch", "n"),
    "city": ("Stadt", "f"),
    "boat": ("Boot", "n"),
    "mouse": ("Maus", "f"),
}
ADJECTIVES = {
    "small": "klein",
    "big": "groß",
    "old": "alt",
    "young": "jung",
    "red": "rot",
    "green": "grün",
    "happy": "glücklich",
    "quiet": "leise",
    "fast": "schnell",
    "tired": "müde",
}
VERBS = {
    "sleeps": "schläft",
    "runs": "läuft",
    "sings": "singt",
    "waits": "wartet",
    "plays": "spielt",
    "swims": "schwimmt",
    "laughs": "lacht",
    "reads": "liest",
}
ADVERBS = {"today": "heute", "here": "hier", "often": "oft", "again": "wieder"}
ARTICLES = {"m": "der", "f": "die", "n": "das"}


@dataclass(frozen=True)
class Example:
    """One prompt with its only correct answer."""

    task: str
    prompt: str
    answer: str


def _reverse_words(rng: random.Random) -> tuple[str, str]:
    words = rng.choices(WORDS, k=rng.randint(2, 5))
    return " ".join(words), " ".join(reversed(words))


def _sort_numbers(rng: random.Random) -> tuple[str, str]:
    numbers = [rng.randint(0, 99) for _ in range(rng.randint(2, 5))]
    return " ".join(map(str, numbers)), " ".join(map(str, sorted(numbers)))


def _count_words(rng: random.Random) -> tuple[str, str]:
    words = rng.choices(WORDS, k=rng.randint(1, 9))
    return " ".join(words), str(len(words))


def _translate(rng: random.Random) -> tuple[str, str]:
    noun = rng.choice(sorted(NOUNS))
    german_noun, gender = NOUNS[noun]
    english, german = ["the"], [ARTICLES[gender]]
    if rng.random() < 0.6:
        adjective = rng.choice(sorted(ADJECTIVES))
        english.append(adjective)
        # Weak declension after a definite article in the nominative: -e.
        german.append(ADJECTIVES[adjective] + "e")
    verb = rng.choice(sorted(VERBS))
    english += [noun, verb]
    german += [german_noun, VERBS[verb]]
    if rng.random() < 0.4:
        adverb = rng.choice(sorted(ADVERBS))
        english.append(adverb)
        german.append(ADVERBS[adverb])
    return " ".join(english), " ".join(german)


TASKS: dict[str, Callable[[random.Random], tuple[str, str]]] = {
    "reverse words": _reverse_words,
    "sort numbers": _sort_numbers,
    "count words": _count_words,
    "translate English to German": _translate,
}
# Training examples per round of tasks: the positional tasks take longest to
# learn, so they are seen more often.
TRAINING_WEIGHTS = {"reverse words": 3, "sort numbers": 3, "count words": 1, "translate English to German": 1}


def is_held_out(prompt: str) -> bool:
    """A fixed tenth of all prompts, by a stable hash, never used for training."""
    return zlib.crc32(prompt.encode()) % 10 == 0


def _examples(seed: int, weights: dict[str, int] | None = None) -> Iterator[Example]:
    rng = random.Random(seed)
    while True:
        for task, make in TASKS.items():
            for _ in range((weights or {}).get(task, 1)):
                source, answer = make(rng)
                yield Example(task, f"{task}: {source}", answer)


def training_examples(seed: int) -> Iterator[Example]:
    """Endless training examples, tasks in turn (weighted by
    ``TRAINING_WEIGHTS``), reproducible for a seed."""
    return (e for e in _examples(seed, TRAINING_WEIGHTS) if not is_held_out(e.prompt))


def held_out_examples(count: int, seed: int) -> list[Example]:
    """``count`` distinct examples that no training run can have seen."""
    chosen: dict[str, Example] = {}
    for example in _examples(seed):
        if is_held_out(example.prompt):
            chosen.setdefault(example.prompt, example)
            if len(chosen) == count:
                break
    return list(chosen.values())
