"""The engines' figures on a GPU, from a script ready before a GPU is lent.

A GPU machine is lent for minutes, with its own Python, torch and
transformers (possibly older than this project's pins), no Ray, no gRPC and
no network. This file runs there straight from the working tree (it makes
the tree importable as ``t5electra`` when it is not installed) and measures
the engines in-process, exactly as a replica runs them:

- T5 (``T5Generator``: prefill, the decoder step, continuous batching) at
  t5-small and t5-base shapes with random weights from their published
  configurations and the embedded tokenizer, in bfloat16 and float16, with
  the decoder step eager, compiled (``torch.compile``) and CUDA-graph
  captured (``mode="reduce-overhead"``), at batch 1, 16 and 64, and with
  rows joining as others leave (requests of 8 and 48 tokens in turn);
- ELECTRA (``ReplacementDetector``), electra-small shapes, bfloat16, eager
  and compiled, at batch 16 and 64;
- CTranslate2 float16 as the peer, where its wheel was carried.

Items run most important first within ``--budget-s``; one that fails is
recorded with its error and the rest go on; the figures (JSON, with the
versions and the device) and the log are written after every item into one
archive in ``--out``, so that a run cut short still returns what it measured.
``--dry-run`` runs the same code on the CPU at the embedded checkpoints'
shapes in seconds, eagerly (compiling the step takes minutes on a CPU): CI
runs it, so that the script cannot rot before a GPU is lent. The shell entry is ``tools/bench/gpu.sh``.
"""

from __future__ import annotations

import argparse
import importlib.util
import io
import json
import platform
import sys
import tarfile
import tempfile
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
ARCHIVE = "gpu-figures.tar.gz"
JOIN_LENGTHS = (8, 48)
SECONDS_PER_POINT = 3.0


def importable() -> None:
    """Makes this working tree importable as ``t5electra`` when no install provides it."""
    if importlib.util.find_spec("t5electra") is not None:
        return
    holder = Path(tempfile.mkdtemp(prefix="t5electra-"))
    (holder / "t5electra").symlink_to(ROOT, target_is_directory=True)
    sys.path.insert(0, str(holder))


class Run:
    """The figures so far, the log, and the archive rewritten after each item."""

    def __init__(self, out: Path, budget_s: float) -> None:
        self.out, self.deadline, self.log = out, time.monotonic() + budget_s, io.StringIO()
        self.figures: dict[str, Any] = {"environment": _environment(), "items": {}}

    def say(self, line: str) -> None:
        print(line, flush=True)
        self.log.write(line + "\n")

    def left(self) -> float:
        return self.deadline - time.monotonic()

    def item(self, name: str, measure: Callable[[], dict[str, Any]], *, needs_s: float) -> None:
        if self.left() < needs_s:
            self.figures["items"][name] = {"skipped": f"{self.left():.0f} s of the budget left, needs {needs_s:.0f}"}
            self.say(f"{name}: skipped (budget)")
        else:
            started = time.monotonic()
            self.say(f"{name}: running")
            try:
                found = measure()
            except Exception as error:  # recorded, and the next item runs: one failure must not cost the lease
                found = {"error": f"{type(error).__name__}: {error}", "trace": traceback.format_exc(limit=6)}
            found["wall_s"] = round(time.monotonic() - started, 1)
            self.figures["items"][name] = found
            self.say(f"{name}: {json.dumps(found)[:400]}")
        self.write()

    def write(self) -> None:
        self.out.mkdir(parents=True, exist_ok=True)
        with tarfile.open(self.out / ARCHIVE, "w:gz") as archive:
            for member, text in (
                ("figures.json", json.dumps(self.figures, indent=2)),
                ("log.txt", self.log.getvalue()),
            ):
                data = text.encode()
                info = tarfile.TarInfo(member)
                info.size = len(data)
                archive.addfile(info, io.BytesIO(data))


def _environment() -> dict[str, Any]:
    import torch
    import transformers

    return {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "device": torch.cuda.get_device_name(0) if torch.cuda.is_available() else platform.processor() or "cpu",
        "ctranslate2": _version_of("ctranslate2"),
    }


def _version_of(module: str) -> str | None:
    if importlib.util.find_spec(module) is None:
        return None
    return getattr(__import__(module), "__version__", "installed")


def _sync() -> None:
    import torch

    if torch.cuda.is_available():
        torch.cuda.synchronize()


def _rate(work: Callable[[], int], seconds: float) -> dict[str, float]:
    """Items a second over at least one batch and ``seconds``, after one
    untimed batch (compiling or capturing happens there, and is reported)."""
    started = time.perf_counter()
    work()
    _sync()
    first = time.perf_counter() - started
    items = batches = 0
    started = time.perf_counter()
    while batches == 0 or time.perf_counter() - started < seconds:
        items += work()
        batches += 1
    _sync()
    return {"per_s": round(items / (time.perf_counter() - started), 1), "first_batch_s": round(first, 2)}


def _with_step(generator: Any, mode: str) -> None:
    """The generator's decoder step as ``mode`` runs it."""
    import torch

    if mode == "compiled":
        generator.decoder_step = torch.compile(generator.decoder_step, dynamic=True)
    elif mode == "cuda-graphs":
        generator.decoder_step = torch.compile(generator.decoder_step, mode="reduce-overhead")


def t5_item(path: str, device: str, dtype: str, mode: str, batches: tuple[int, ...], seconds: float) -> dict[str, Any]:
    """T5 tokens/s at each batch size (every request forced to the peers' length),
    then with rows joining as others leave at the largest batch size."""
    from t5electra.server.domain import GenerationParameters, GenerationRequest
    from t5electra.server.generator import T5Generator
    from t5electra.tools.bench.peers import PEER_NEW_TOKENS, PEER_PROMPT

    generator = T5Generator(path, device=device, dtype=dtype)
    _with_step(generator, mode)

    def request(tokens: int) -> Any:
        forced = GenerationParameters(max_new_tokens=tokens, min_new_tokens=tokens)
        return generator.prepare(GenerationRequest(PEER_PROMPT, forced))

    def static(size: int) -> Callable[[], int]:
        return lambda: sum(r.output_tokens for r in generator.generate([request(PEER_NEW_TOKENS)] * size))

    found: dict[str, Any] = {f"b{size}_tokens": _rate(static(size), seconds) for size in batches}
    found[f"joins_b{max(batches)}_tokens"] = _rate(lambda: _continuous(generator, request, max(batches)), seconds)
    return found


def _continuous(generator: Any, request: Callable[[int], Any], rows: int) -> int:
    """Keeps ``rows`` requests decoding, a new one joining as each ends,
    until 2 × ``rows`` have ended; returns their tokens."""
    session = generator.session()
    lengths = iter(JOIN_LENGTHS[i % len(JOIN_LENGTHS)] for i in range(3 * rows))
    for _ in range(rows):
        session.add(request(next(lengths)))
    ended = tokens = 0
    while ended < 2 * rows:
        for event in session.step():
            if event.result is not None:
                ended, tokens = ended + 1, tokens + event.result.output_tokens
                session.add(request(next(lengths)))
    return tokens


def electra_item(path: str, device: str, dtype: str, mode: str, batches: tuple[int, ...], seconds: float) -> dict:
    """ELECTRA texts/s at each batch size; ``compiled`` is ``electra.compile``."""
    from t5electra.server.detector import ReplacementDetector
    from t5electra.server.domain import DetectionRequest
    from t5electra.tools.bench.peers import PEER_SENTENCES

    detector = ReplacementDetector(path, device=device, dtype=dtype, compile=mode == "compiled")

    def batch(size: int) -> Callable[[], int]:
        texts = [PEER_SENTENCES[i % len(PEER_SENTENCES)] for i in range(size)]
        return lambda: len(detector.detect([detector.prepare(DetectionRequest(t)) for t in texts]))

    return {f"b{size}_texts": _rate(batch(size), seconds) for size in batches}


def ctranslate2_item(path: str, workdir: Path, batches: tuple[int, ...], seconds: float) -> dict[str, Any]:
    """CTranslate2 float16 on the GPU: the bench's peer, on cuda."""
    from t5electra.tools.bench.peers import ctranslate2_t5

    return {
        f"b{size}_tokens": _rate(ctranslate2_t5(path, workdir, size, device="cuda", precision="float16"), seconds)
        for size in batches
    }


def plan(run: Run, workdir: Path, *, dry_run: bool) -> None:
    """Every item, most important first."""
    from t5electra.server.embedded import TINY_ELECTRA, TINY_T5
    from t5electra.tools.bench import checkpoints

    if dry_run:
        run.item(
            "t5 tiny float32 eager", lambda: t5_item(str(TINY_T5), "cpu", "float32", "eager", (1, 4), 0.2), needs_s=5
        )
        run.item(
            "electra tiny float32 eager",
            lambda: electra_item(str(TINY_ELECTRA), "cpu", "float32", "eager", (4,), 0.2),
            needs_s=2,
        )
        return
    t5 = {"small": str(checkpoints.random_t5(workdir / "t5-small", checkpoints.T5_SMALL))}
    t5["base"] = str(checkpoints.random_t5(workdir / "t5-base", checkpoints.T5_BASE))
    electra = str(checkpoints.random_electra(workdir / "electra-small"))
    batches, seconds = (1, 16, 64), SECONDS_PER_POINT

    def t5_run(shape: str, dtype: str, mode: str, needs: float) -> None:
        run.item(
            f"t5 {shape} {dtype} {mode}",
            lambda: t5_item(t5[shape], "cuda", dtype, mode, batches, seconds),
            needs_s=needs,
        )

    for shape, dtype in (("small", "bfloat16"), ("small", "float16"), ("base", "bfloat16")):
        t5_run(shape, dtype, "eager", 20)
    for mode in ("eager", "compiled"):
        run.item(
            f"electra small bfloat16 {mode}",
            lambda m=mode: electra_item(electra, "cuda", "bfloat16", m, (16, 64), seconds),
            needs_s=30,
        )
    if _version_of("ctranslate2"):
        for shape in ("small", "base"):
            run.item(
                f"ctranslate2 {shape} float16",
                lambda s=shape: ctranslate2_item(t5[s], workdir, batches, seconds),
                needs_s=20,
            )
    else:
        run.figures["items"]["ctranslate2"] = {"skipped": "ctranslate2 is not installed (carry its wheel)"}
    # Last: on the CPU the T5 step recompiles at every length (its cache's
    # Python-side state enters dynamo's guards), so these may spend the rest.
    for mode in ("compiled", "cuda-graphs"):
        t5_run("small", "bfloat16", mode, 60)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, required=True, help=f"where {ARCHIVE} is written")
    parser.add_argument("--budget-s", type=float, default=330.0, help="no item starts that could not end within it")
    parser.add_argument("--dry-run", action="store_true", help="the CPU and the embedded shapes, in seconds")
    args = parser.parse_args(argv)
    importable()
    import torch

    if not args.dry_run and not torch.cuda.is_available():
        parser.error("no CUDA device here; --dry-run runs the same code on the CPU")
    torch.manual_seed(0)
    run = Run(args.out, args.budget_s)
    run.say(f"environment: {json.dumps(run.figures['environment'])}")
    with tempfile.TemporaryDirectory(prefix="t5electra-gpu-") as workdir:
        plan(run, Path(workdir), dry_run=args.dry_run)
    run.write()
    run.say(f"wrote {args.out / ARCHIVE}")


if __name__ == "__main__":
    main()
