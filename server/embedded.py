"""Where the embedded tiny checkpoints live inside the installed package:
the models served by default, with no network (``t5electra make-checkpoints``
retrains them)."""

from __future__ import annotations

from importlib.resources import files

CHECKPOINTS = files("t5electra.server") / "checkpoints"
TINY_T5 = str(CHECKPOINTS / "tiny-t5")
TINY_ELECTRA = str(CHECKPOINTS / "tiny-electra")
TINY_ELECTRA_GENERATOR = str(CHECKPOINTS / "tiny-electra-generator")
