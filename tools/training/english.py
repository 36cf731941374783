"""General-English sentences from Debian packages, for the embedded ELECTRA
checkpoints, which learned only docstrings before and so took ordinary
words ("river", "sky") for replacements.

The packages are fetched with ``apt-get download`` and unpacked with
``dpkg-deb -x`` into a cache directory: nothing is installed (the R
packages would pull in R), no root is needed, and the registry is the only
network source. Every text is public domain; the packages around them are
MIT or BSD licensed:

==================  =====================================================  ===================
package             text                                                   licence
==================  =====================================================  ===================
r-cran-janeaustenr  Jane Austen's six novels                               PD text, MIT package
r-cran-tidytext     The War of the Worlds, Twenty Thousand Leagues under   PD texts, MIT package
                    the Sea, Great Expectations (not its Pride and
                    Prejudice, a duplicate)
r-cran-tokenizers   Moby Dick                                              PD text, MIT package
sword-text-web      a modern-English public-domain bible translation       public domain
fortunes            22 general-audience sections of the fortune cookies    BSD
jargon-text         The Jargon File 4.4.7                                  public domain
dict-devil          Ambrose Bierce, The Devil's Dictionary                 public domain
==================  =====================================================  ===================

The extracted sentences are cached as text, one per line, sorted, so a
corpus is the same on every machine that gets the same package versions.
"""

from __future__ import annotations

import gzip
import os
import random
import subprocess
import tempfile
import zlib
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from functools import cache
from pathlib import Path

from . import rdata, texts

_R_LIBRARY = Path("usr/lib/R/site-library")
# The general-audience sections: not the edgy ones (ethnic, men-women,
# politics, drugs), nor copyrighted lyrics and books, IRC logs, ASCII art or
# the Linux, Debian and Perl in-jokes.
_FORTUNE_SECTIONS = (
    "cookie",
    "definitions",
    "education",
    "food",
    "humorists",
    "kids",
    "law",
    "love",
    "medicine",
    "miscellaneous",
    "news",
    "pets",
    "platitudes",
    "science",
    "sports",
    "wisdom",
    "work",
    "people",
    "computers",
    "goedel",
    "magic",
    "paradoxum",
)


def default_cache() -> Path:
    """``$T5ELECTRA_CORPUS_CACHE``, else ``~/.cache/t5electra/english``."""
    return Path(os.environ.get("T5ELECTRA_CORPUS_CACHE", Path.home() / ".cache" / "t5electra" / "english"))


@dataclass(frozen=True)
class Source:
    """A package, how to get paragraphs out of its unpacked tree, and how
    many training sentences it contributes (``share`` of the English part:
    no register, Victorian or biblical, may dominate the mix)."""

    name: str
    package: str
    licence: str
    share: float
    paragraphs: Callable[[Path], Iterable[str]]


def _austen(root: Path) -> Iterator[str]:
    for lines in rdata.lazy_load(root / _R_LIBRARY / "janeaustenr" / "data").values():
        yield from texts.book_paragraphs("\n".join(line or "" for line in lines))


def _tidytext_books(root: Path) -> Iterator[str]:
    books = rdata.rda(root / _R_LIBRARY / "tidytext" / "extdata" / "books.rda")["books"]
    lines = [t or "" for t, title in zip(books["text"], books["title"], strict=True) if title != "Pride and Prejudice"]
    yield from _without_gutenberg_notes(texts.book_paragraphs("\n".join(lines)))


def _moby_dick(root: Path) -> Iterator[str]:
    text = rdata.lazy_load(root / _R_LIBRARY / "tokenizers" / "data")["mobydick"]
    yield from _without_gutenberg_notes(texts.book_paragraphs(next(iter(text.values()))))


def _without_gutenberg_notes(paragraphs: Iterable[str]) -> Iterator[str]:
    """Transcribers' notes that the R packages left in."""
    return (p for p in paragraphs if "gutenberg" not in p.lower() and "etext" not in p.lower())


def _bible(root: Path) -> Iterator[str]:
    for block in texts.sword_blocks(root / "usr/share/sword/modules/texts/ztext/engWEB2015eb"):
        yield from texts.osis_paragraphs(block)


def _fortunes(root: Path) -> Iterator[str]:
    for section in _FORTUNE_SECTIONS:
        yield from texts.fortune_entries((root / "usr/share/games/fortunes" / section).read_text(errors="replace"))


def _jargon(root: Path) -> Iterator[str]:
    yield from texts.book_paragraphs(
        gzip.decompress((root / "usr/share/doc/jargon-text/jargon.txt.gz").read_bytes()).decode()
    )


def _devil(root: Path) -> Iterator[str]:
    yield from texts.book_paragraphs(gzip.decompress((root / "usr/share/dictd/devil.dict.dz").read_bytes()).decode())


SOURCES = (
    Source("austen", "r-cran-janeaustenr", "public domain text; package MIT", 0.16, _austen),
    Source("wells-verne-dickens", "r-cran-tidytext", "public domain texts; package MIT", 0.12, _tidytext_books),
    Source("melville", "r-cran-tokenizers", "public domain text; package MIT", 0.06, _moby_dick),
    Source("bible", "sword-text-web", "public domain", 0.20, _bible),
    Source("fortunes", "fortunes", "BSD", 0.26, _fortunes),
    Source("jargon", "jargon-text", "public domain", 0.14, _jargon),
    Source("devil", "dict-devil", "public domain", 0.06, _devil),
)


def unpack(package: str, cache_dir: Path) -> Path:
    """The package's unpacked tree under ``cache_dir``, downloaded with
    ``apt-get download`` the first time."""
    root = cache_dir / "packages" / package
    if root.is_dir():
        return root
    with tempfile.TemporaryDirectory(dir=cache_dir) as scratch:
        done = subprocess.run(["apt-get", "download", package], cwd=scratch, capture_output=True, text=True)
        debs = sorted(Path(scratch).glob(f"{package}_*.deb"))
        if done.returncode or not debs:
            raise RuntimeError(
                f"apt-get download {package} failed (run `apt-get update` first if the package lists are "
                f"missing): {done.stderr.strip()}"
            )
        partial = Path(scratch) / "tree"
        subprocess.run(["dpkg-deb", "-x", str(debs[0]), str(partial)], check=True)
        root.parent.mkdir(parents=True, exist_ok=True)
        partial.rename(root)
    return root


def source_sentences(source: Source, cache_dir: Path) -> list[str]:
    """A source's distinct sentences, sorted; extracted once, then read
    from ``cache_dir/<name>.txt``."""
    cached = cache_dir / f"{source.name}.txt"
    if not cached.exists():
        cache_dir.mkdir(parents=True, exist_ok=True)
        root = unpack(source.package, cache_dir)
        found = {s for p in source.paragraphs(root) for s in texts.sentences(p)}
        cached.write_text("".join(f"{s}\n" for s in sorted(found)))
    return cached.read_text().splitlines()


def _without_end_mark(sentence: str) -> str:
    """Everyday text often has no final full stop (captions, chat, WordNet's
    examples); a stable fifth of the sentences lose theirs so that the
    models do not take its absence for a sign of replacement."""
    if zlib.crc32(sentence.encode()) % 5 == 0 and sentence.endswith("."):
        return sentence[:-1]
    return sentence


@cache
def training_sentences(total: int = 150_000, cache_dir: Path | None = None) -> tuple[str, ...]:
    """``total`` English training sentences, each source contributing its
    share: drawn without repetition from a large source, repeated from a
    small one. Deterministic for a corpus: sources are sorted and sampled
    with a fixed seed."""
    cache_dir = cache_dir or default_cache()
    chosen: list[str] = []
    for source in SOURCES:
        pool = source_sentences(source, cache_dir)
        wanted = round(source.share * total)
        rng = random.Random(f"english/{source.name}")
        repeats, rest = divmod(wanted, len(pool))
        chosen += pool * repeats + rng.sample(pool, rest)
    return tuple(_without_end_mark(s) for s in chosen)


def all_sentences(cache_dir: Path | None = None) -> set[str]:
    """Every sentence of every source, for keeping held-out text apart."""
    return {s for source in SOURCES for s in source_sentences(source, cache_dir or default_cache())}
