"""What a team could run instead of this server, in-process on the same
checkpoints and the same workload: CTranslate2 int8 for T5 and ONNX Runtime
int8 for ELECTRA, the fastest CPU engines for these architectures, one
intra-op thread each (what a default replica gets).

Both come with the ``peers`` extra (``pip install ".[peers]"``); the bench
skips this phase, and says so, where they are missing. Converted models go
to the bench's work directory, never into the installed package.
"""

from __future__ import annotations

import importlib.util
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

PEER_PROMPT = "translate English to German: the old teacher reads the long letter to the happy children in the garden"
"""The peers phase's one prompt (about 25 tokens of the embedded tokenizer)."""
PEER_NEW_TOKENS = 48
PEER_SENTENCES = (
    "The small boat drifted slowly across the calm lake while the children watched from the wooden pier.",
    "Return the value of the named attribute of the object, or the default value when it is missing.",
    "She opened the window to let the cool evening air into the kitchen before dinner was ready.",
    "The function raises an exception when the file cannot be opened for reading or writing.",
)
"""The peers phase's texts: four sentences of 15 to 20 words."""
PEER_BATCH = 16


def available() -> str | None:
    """None when both peers can run here, else what is missing."""
    missing = [name for name in ("ctranslate2", "onnxruntime", "onnx") if importlib.util.find_spec(name) is None]
    return f"missing {', '.join(missing)}: pip install '.[peers]'" if missing else None


@dataclass(frozen=True)
class PeerPoint:
    """One peer at one batch size: ``items`` are tokens (T5) or texts (ELECTRA)."""

    peer: str
    model: str
    batch_size: int
    items_per_s: float
    unit: str
    batches: int

    def to_json(self) -> dict[str, Any]:
        return {
            "peer": self.peer,
            "model": self.model,
            "batch_size": self.batch_size,
            self.unit: round(self.items_per_s, 1),
            "batches": self.batches,
        }


def _repeat(work: Callable[[], int], duration: float) -> tuple[float, int]:
    """Runs ``work`` (which returns items done) for about ``duration``
    seconds after one warm-up call, at least twice; items per second."""
    work()
    items = batches = 0
    started = time.perf_counter()
    while batches < 2 or time.perf_counter() - started < duration:
        items += work()
        batches += 1
    return items / (time.perf_counter() - started), batches


def ctranslate2_t5(model: str, workdir: Path, batch_size: int, duration: float, threads: int = 1) -> PeerPoint:
    """CTranslate2 int8 greedy decoding of ``PEER_PROMPT``, ``PEER_NEW_TOKENS``
    new tokens forced, ``batch_size`` copies a batch."""
    import ctranslate2
    from transformers import AutoTokenizer

    converted = workdir / f"ctranslate2-int8-{Path(model).name}"
    if not (converted / "model.bin").exists():
        ctranslate2.converters.TransformersConverter(model).convert(str(converted), quantization="int8", force=True)
    translator = ctranslate2.Translator(
        str(converted), device="cpu", compute_type="int8", intra_threads=threads, inter_threads=1
    )
    tokenizer = AutoTokenizer.from_pretrained(model)
    source = tokenizer.convert_ids_to_tokens(tokenizer.encode(PEER_PROMPT))

    def work() -> int:
        results = translator.translate_batch(
            [source] * batch_size,
            beam_size=1,
            max_decoding_length=PEER_NEW_TOKENS,
            min_decoding_length=PEER_NEW_TOKENS,
        )
        return sum(len(r.hypotheses[0]) for r in results)

    rate, batches = _repeat(work, duration)
    return PeerPoint("CTranslate2 int8", Path(model).name, batch_size, rate, "tokens_per_s", batches)


def onnxruntime_electra(model: str, workdir: Path, batch_size: int, duration: float, threads: int = 1) -> PeerPoint:
    """ONNX Runtime with dynamic int8 quantization scoring ``PEER_SENTENCES``
    in batches of ``batch_size`` (padded to the longest, as the server does)."""
    import numpy as np
    import onnxruntime
    from transformers import AutoTokenizer

    quantized = _onnx_int8(model, workdir)
    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads, options.inter_op_num_threads = threads, 1
    session = onnxruntime.InferenceSession(str(quantized), options, providers=["CPUExecutionProvider"])
    tokenizer = AutoTokenizer.from_pretrained(model)
    texts = [PEER_SENTENCES[i % len(PEER_SENTENCES)] for i in range(batch_size)]

    def work() -> int:
        encoded = tokenizer(texts, padding=True, return_tensors="np")
        inputs = {name: encoded[name].astype(np.int64) for name in ("input_ids", "attention_mask")}
        logits = session.run(None, inputs)[0]
        probabilities = 1 / (1 + np.exp(-logits))  # what a caller gets, as the server computes it
        return len(probabilities)

    rate, batches = _repeat(work, duration)
    return PeerPoint("ONNX Runtime int8", Path(model).name, batch_size, rate, "texts_per_s", batches)


def _onnx_int8(model: str, workdir: Path) -> Path:
    """``model`` exported to ONNX and quantized (int8 weights, dynamic
    activations), cached in ``workdir``."""
    quantized = workdir / f"onnx-int8-{Path(model).name}.onnx"
    if quantized.exists():
        return quantized
    import torch
    from onnxruntime.quantization import QuantType, quantize_dynamic
    from transformers import ElectraForPreTraining

    exported = workdir / f"onnx-{Path(model).name}.onnx"
    electra = ElectraForPreTraining.from_pretrained(model).eval()
    example = torch.ones((2, 8), dtype=torch.long)
    axes = {0: "batch", 1: "tokens"}
    torch.onnx.export(
        electra,
        (example, example),
        str(exported),
        input_names=["input_ids", "attention_mask"],
        output_names=["logits"],
        dynamic_axes={"input_ids": axes, "attention_mask": axes, "logits": axes},
        opset_version=17,
        dynamo=False,
    )
    quantize_dynamic(str(exported), str(quantized), weight_type=QuantType.QInt8)
    return quantized


def measure(t5: str, electra: str, workdir: Path, duration: float, threads: int = 1) -> list[PeerPoint]:
    """Both peers at batch 1 and at ``PEER_BATCH``."""
    return [
        point
        for batch in (1, PEER_BATCH)
        for point in (
            ctranslate2_t5(t5, workdir, batch, duration, threads),
            onnxruntime_electra(electra, workdir, batch, duration, threads),
        )
    ]
