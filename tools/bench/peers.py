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
from collections.abc import Callable
from pathlib import Path

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
PEER_BATCHES = (1, PEER_BATCH)
"""Batch 1 is every interactive caller's latency; 16 the bench's reference load."""


def available() -> str | None:
    """None when both peers can run here, else what is missing."""
    missing = [name for name in ("ctranslate2", "onnxruntime", "onnx") if importlib.util.find_spec(name) is None]
    return f"missing {', '.join(missing)}: pip install '.[peers]'" if missing else None


def ctranslate2_t5(
    model: str, workdir: Path, batch_size: int, threads: int = 1, *, device: str = "cpu", precision: str = "int8"
) -> Callable[[], int]:
    """One batch of CTranslate2 greedy decoding (int8 on the CPU; the GPU run
    asks for float16 on cuda) of ``PEER_PROMPT``, ``PEER_NEW_TOKENS`` new
    tokens forced, ``batch_size`` copies, tokenizing and detokenizing counted
    as the engine's are; returns tokens made."""
    import ctranslate2
    from transformers import AutoTokenizer

    converted = workdir / f"ctranslate2-{precision}-{Path(model).name}"
    if not (converted / "model.bin").exists():
        ctranslate2.converters.TransformersConverter(model).convert(str(converted), quantization=precision, force=True)
    translator = ctranslate2.Translator(
        str(converted), device=device, compute_type=precision, intra_threads=threads, inter_threads=1
    )
    tokenizer = AutoTokenizer.from_pretrained(model)

    def work() -> int:
        source = [tokenizer.convert_ids_to_tokens(tokenizer.encode(PEER_PROMPT)) for _ in range(batch_size)]
        results = translator.translate_batch(
            source,
            beam_size=1,
            max_decoding_length=PEER_NEW_TOKENS,
            min_decoding_length=PEER_NEW_TOKENS,
        )
        hypotheses = [r.hypotheses[0] for r in results]
        tokenizer.batch_decode([tokenizer.convert_tokens_to_ids(h) for h in hypotheses], skip_special_tokens=True)
        return sum(len(h) for h in hypotheses)

    return work


def onnxruntime_electra(model: str, workdir: Path, batch_size: int, threads: int = 1) -> Callable[[], int]:
    """One batch of ONNX Runtime with dynamic int8 quantization scoring
    ``PEER_SENTENCES`` (padded to the longest, as the server does), doing
    what the engine does around the model: tokenizing with character
    offsets, and each text's per-token probabilities as Python floats;
    returns texts scored."""
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
        encoded = tokenizer(texts, padding=True, return_tensors="np", return_offsets_mapping=True)
        inputs = {name: encoded[name].astype(np.int64) for name in ("input_ids", "attention_mask")}
        logits = session.run(None, inputs)[0]
        probabilities = (1 / (1 + np.exp(-logits))).tolist()  # what a caller gets, as the server computes it
        lengths = encoded["attention_mask"].sum(axis=1).tolist()
        scored = [p[1 : n - 1] for p, n in zip(probabilities, lengths, strict=True)]
        return len(scored)

    return work


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
