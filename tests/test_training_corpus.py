"""The general-English corpus code on small synthetic inputs: the formats
registry packages ship, cleaned into sentences, with nothing downloaded."""

from __future__ import annotations

import gzip
import struct
import zlib
from pathlib import Path

import pytest

from t5electra.tools.training import english, everyday, heldout, rdata, texts

pytestmark = pytest.mark.unit


def _xdr(*ints: int) -> bytes:
    return struct.pack(f">{len(ints)}i", *ints)


def _strings(*values: str) -> bytes:
    """An R character vector (STRSXP of UTF-8 CHARSXPs), serialized."""
    body = _xdr(16, len(values))
    for value in values:
        raw = value.encode()
        body += _xdr(9 | (1 << 15) << 0, len(raw)) + raw
    return body


def test_r_character_vectors_and_lazy_load_databases_are_read(tmp_path: Path) -> None:
    header = b"X\n" + _xdr(2, 0x040200, 0x020300)
    assert rdata.loads(header + _strings("It is a truth", "universally acknowledged.")) == [
        "It is a truth",
        "universally acknowledged.",
    ]
    # Rdata.rdb: 4-byte length then zlib; Rdata.rdx: a gzip named list
    # ("variables") of name -> (offset, length) integer vectors.
    blob = struct.pack(">i", 0) + zlib.compress(header + _strings("Call me Ishmael."))
    (tmp_path / "Rdata.rdb").write_bytes(blob)
    variables = _xdr(19 | (1 << 9), 1) + _xdr(13, 2, 0, len(blob))
    names = _xdr(2 | (1 << 10)) + _xdr(1) + _xdr(9, 5) + b"names" + _strings("mobydick") + _xdr(254)
    index = _xdr(19 | (1 << 9), 1) + variables + names
    index_names = _xdr(2 | (1 << 10)) + _xdr(255 | (1 << 8)) + _strings("variables") + _xdr(254)
    (tmp_path / "Rdata.rdx").write_bytes(gzip.compress(header + index + index_names))
    assert rdata.lazy_load(tmp_path) == {"mobydick": ["Call me Ishmael."]}


def test_book_paragraphs_leave_out_gutenberg_matter_and_headings() -> None:
    book = (
        "The Project Gutenberg EBook\n*** START OF THIS PROJECT GUTENBERG EBOOK ***\n\nCHAPTER I\n\n"
        "It was a dark and\nstormy night.\n\nCONTENTS\n\n*** END OF THIS PROJECT GUTENBERG EBOOK ***\nLicence."
    )
    assert list(texts.book_paragraphs(book)) == ["It was a dark and stormy night."]


def test_fortune_entries_drop_attributions_art_and_dialogue() -> None:
    source = (
        "A clean desk is a sign of a cluttered drawer.\n\t\t-- Anonymous\n%\n"
        "  /\\_/\\\n ( o.o )\n%\nQ: Why did the chicken cross the road?\nA: To get to the other side.\n%\n"
    )
    assert list(texts.fortune_entries(source)) == ["A clean desk is a sign of a cluttered drawer."]


def test_osis_markup_becomes_paragraphs_without_notes_or_titles() -> None:
    xml = '<title>Psalm 1</title><p>Blessed is the man<note n="a">Or, person</note> who walks.</p><p>He is like a tree.'
    assert list(texts.osis_paragraphs(xml)) == ["Blessed is the man who walks.", "He is like a tree."]


def test_sentences_are_split_cleaned_and_filtered() -> None:
    paragraph = (
        "\u201cI know,\u201d said Mr. Darcy. It rained\u2014all day. Too short. "
        "The total was 3 + 4 = 7 apples today. She walked to the river and sat down."
    )
    assert list(texts.sentences(paragraph)) == [
        '"I know," said Mr. Darcy.',
        "It rained - all day.",
        "She walked to the river and sat down.",
    ]
    assert list(texts.sentences('"It is late. We must go now, before the rain.')) == [
        "We must go now, before the rain."
    ]


def test_held_out_sources_are_parsed_without_their_libraries() -> None:
    gloss = '00005930 03 n 01 dwarf 0 001 | a small plant; "the dwarf tree grew in a pot"; "a dwarf bush"'
    assert list(heldout.wordnet_examples([gloss, '  1 This line is a licence header "quoted"'])) == [
        "the dwarf tree grew in a pot",
        "a dwarf bush",
    ]
    yaml = "categories:\n- food\nconversations:\n- - Do you like pizza?\n  - 'Yes, with extra cheese.'\n"
    assert list(heldout.chatterbot_lines(yaml)) == ["food", "Do you like pizza?", "Yes, with extra cheese."]


def test_training_mix_shares_add_up_and_held_out_sets_are_committed() -> None:
    assert sum(s.share for s in english.SOURCES) == pytest.approx(1.0)
    assert len(everyday.unaltered()) >= 200
    assert len(everyday.replaced()) >= 200
    assert not set(everyday.unaltered()) & set(everyday.originals())
