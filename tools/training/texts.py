"""From the text formats that registry packages ship to clean English
sentences: hard-wrapped books, fortune files, SWORD bible modules.

Every function is pure (text in, text out) so that it can be tested without
downloading anything; :mod:`.english` feeds them the packages' files.
"""

from __future__ import annotations

import html
import re
import struct
import zlib
from collections.abc import Iterator
from pathlib import Path

_GUTENBERG_START = re.compile(r"^\*\*\* ?START OF.*$", re.M)
_GUTENBERG_END = re.compile(r"^\*\*\* ?END OF.*$|^End of (the )?Project Gutenberg", re.M)
_HEADING = re.compile(r"^(CHAPTER|Chapter|BOOK|VOLUME|PART|ETYMOLOGY|EXTRACTS)\b[^.!?]{0,40}$")
_ATTRIBUTION = re.compile(r"^\s*(--|\u2014|~~)")
_SPEAKER = re.compile(r"^\s*[A-Z][A-Za-z .']{0,20}:\s", re.M)
# A sentence ends at . ! or ?, maybe followed by a closing quote, before a
# capital (maybe after an opening quote); titles like "Mr." do not end one.
_SENTENCE_END = re.compile(
    r"(?<!\bMr\.)(?<!\bMrs\.)(?<!\bDr\.)(?<!\bSt\.)(?<!\bMs\.)"
    r"(?:(?<=[.!?])|(?<=[.!?][\"']))\s+(?=[\"']?[A-Z])"
)
_PLAIN = re.compile(r"[A-Za-z0-9 ,;:'\"()!?.-]+")
_TYPOGRAPHY = str.maketrans({"\u201c": '"', "\u201d": '"', "\u2018": "'", "\u2019": "'", "\u2014": " - ", "_": ""})


def book_paragraphs(text: str) -> Iterator[str]:
    """One paragraph per blank-line-separated block of a hard-wrapped book,
    without a Project Gutenberg header or licence, chapter headings or
    all-capital lines (titles, tables of contents)."""
    text = text.lstrip("\ufeff")
    if start := _GUTENBERG_START.search(text):
        text = text[start.end() :]
    if end := _GUTENBERG_END.search(text):
        text = text[: end.start()]
    for block in re.split(r"\n\s*\n", text):
        paragraph = " ".join(block.split())
        if paragraph and not _HEADING.match(paragraph) and not paragraph.isupper():
            yield paragraph


def fortune_entries(text: str) -> Iterator[str]:
    """The prose entries of a strfile source (entries between ``%`` lines):
    attributions are cut, and ASCII art, tables and dialogue transcripts
    (``Q: ...``) dropped, since their lines are not sentences."""
    for entry in re.split(r"^%\s*$", text, flags=re.M):
        lines = entry.strip("\n").split("\n")
        while lines and _ATTRIBUTION.match(lines[-1]):
            lines.pop()
        body = "\n".join(line for line in lines if not _ATTRIBUTION.match(line))
        letters = sum(c.isalpha() for c in body)
        if letters < 20 or letters < 0.6 * len("".join(body.split())) or _SPEAKER.search(body):
            continue
        yield " ".join(body.split())


def sword_blocks(module_dir: Path) -> Iterator[str]:
    """The OSIS XML blocks of a SWORD zText module: ``*.bzs`` holds 12-byte
    records (offset, size, unpacked size) into the zlib blocks of ``*.bzz``."""
    for testament in ("ot", "nt"):
        index = (module_dir / f"{testament}.bzs").read_bytes()
        blocks = (module_dir / f"{testament}.bzz").read_bytes()
        for record in range(len(index) // 12):
            offset, size, _ = struct.unpack_from("<III", index, record * 12)
            if size:
                yield zlib.decompress(blocks[offset : offset + size]).decode("utf-8", "replace")


def osis_paragraphs(xml: str) -> Iterator[str]:
    """Plain paragraphs of OSIS markup: footnotes and titles dropped, the
    paragraph and verse-line milestones turned into breaks."""
    xml = re.sub(r"<note\b.*?</note>", "", xml, flags=re.S)
    xml = re.sub(r"<title\b[^>]*>.*?</title>", "\n", xml, flags=re.S)
    xml = re.sub(r"<(div|p|lg|l)\b[^>]*/?>|</(p|lg|l)>", "\n", xml)
    for line in html.unescape(re.sub(r"<[^>]+>", "", xml)).split("\n"):
        if paragraph := " ".join(line.split()):
            yield paragraph


def sentences(paragraph: str, min_words: int = 5, max_words: int = 40) -> Iterator[str]:
    """The prose sentences of a paragraph, typography made ASCII.

    A sentence is kept when it starts with a capital (or a quote), ends with
    . ! or ? (maybe quoted), uses only letters, digits and light punctuation
    and is mostly letters: the models learn what ordinary English looks
    like, so verse fragments, numbers tables and markup stay out.
    """
    text = " ".join(paragraph.translate(_TYPOGRAPHY).split())
    for sentence in _SENTENCE_END.split(text):
        words = sentence.split()
        if not min_words <= len(words) <= max_words or not _PLAIN.fullmatch(sentence):
            continue
        if not re.match(r"[\"']?[A-Z]", sentence) or not re.search(r"[.!?][\"']?$", sentence):
            continue
        if sum(c.isalpha() for c in sentence) < 0.75 * len(sentence.replace(" ", "")):
            continue
        # A quotation running over several sentences leaves each with one
        # quote mark; without it the sentence still reads as English.
        yield sentence.replace('"', "") if sentence.count('"') % 2 else sentence
