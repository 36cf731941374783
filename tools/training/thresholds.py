"""How the embedded discriminator trades flagged genuine words against
found replacements as a caller raises ``threshold``: the table in
docs/configuration.md. Run ``python -m t5electra.tools.training.thresholds
[CHECKPOINT]`` to print it for the shipped checkpoint or another one."""

from __future__ import annotations

import sys

from t5electra.server.detector import ReplacementDetector
from t5electra.server.domain import DetectionRequest
from t5electra.server.embedded import TINY_ELECTRA
from t5electra.tools.training import electra, everyday

THRESHOLDS = (0.5, 0.6, 0.7, 0.8)


def main(checkpoint: str = TINY_ELECTRA) -> None:
    detector = ReplacementDetector(checkpoint)
    unaltered = everyday.unaltered()
    corrupted = electra.everyday_held_out()
    print("| threshold | everyday words flagged | everyday-English F1 |")
    print("|---|---|---|")
    for threshold in THRESHOLDS:

        def detect(texts: list[str], threshold: float = threshold) -> list:
            return detector.detect([detector.prepare(DetectionRequest(t, threshold=threshold)) for t in texts])

        words = [word for detection in detect(unaltered) for word in detection.words]
        flagged = sum(word.replaced for word in words)
        scores = electra.f1(
            lambda texts: [[(t.start, t.end, t.replaced) for t in d.tokens] for d in detect(texts)], corrupted
        )
        print(f"| {threshold} | {flagged / len(words):.1%} ({flagged} of {len(words)}) | {scores['f1']:.2f} |")


if __name__ == "__main__":
    main(*sys.argv[1:])
