"""What a load run sends: the RPC, the concurrency or rate, how long, the
texts and parameters (:class:`LoadConfig`), and the default texts, which
the embedded checkpoints answer."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

Rpc = Literal["generate", "generate-stream", "detect", "model-infer-t5", "model-infer-electra"]
RPCS: tuple[str, ...] = Rpc.__args__  # type: ignore[attr-defined]
INFERENCE_MODELS = {"model-infer-t5": "t5", "model-infer-electra": "electra"}
"""The Open Inference Protocol's model names (the server's defaults) behind each ModelInfer choice."""

GENERATION_PROMPTS = (
    "reverse words: apple river stone",
    "sort numbers: 42 7 19 88 3",
    "translate English to German: the small dog sleeps today",
    "count words: tiger zebra falcon",
    "reverse words: candle forest mirror planet rocket",
    "translate English to German: the old teacher reads again",
    "sort numbers: 5 61 23",
    "translate English to German: the happy child plays",
)
DETECTION_TEXTS = (
    "Return the value of the attribute unless it is missing.",
    "The callable is invoked with a single argument for each element of the list.",
    "Raise an exception when the file cannot be opened for reading.",
    "This module provides functions for working with dates and times in a portable way.",
    "If the optional argument is given, it is used as the default value.",
)


@dataclass(frozen=True)
class LoadConfig:
    address: str
    rpc: Rpc = "generate"
    concurrency: int = 4
    rate: float | None = None
    duration: float | None = 10.0
    requests: int | None = None
    warmup: float = 2.0
    timeout: float = 30.0
    prompts: tuple[str, ...] = ()
    params: dict[str, Any] = field(default_factory=dict)
    # DetectReplacements options (suggestions, word_scoring, offset_unit).
    detect_options: dict[str, Any] = field(default_factory=dict)
    # Parameter sets that requests take in turn on top of ``params`` (e.g.
    # short and long answers); figures are also reported per set.
    mix: tuple[dict[str, Any], ...] = ()
    # A duration-bound window goes on past its duration until this many
    # measured requests have succeeded (and one of each ``mix`` set); None:
    # one per closed-loop caller, one for an open loop.
    min_succeeded: int | None = None
    max_window_factor: float = 10.0
    # Send no project metadata, only the gRPC deadline, as a plain gRPC
    # client (grpcurl, another language's stubs, a mesh sidecar) would.
    plain: bool = False

    def wanted_successes(self) -> int:
        if self.min_succeeded is not None:
            return self.min_succeeded
        return 1 if self.rate else self.concurrency

    def texts(self) -> tuple[str, ...]:
        if self.prompts:
            return self.prompts
        return DETECTION_TEXTS if self.rpc in ("detect", "model-infer-electra") else GENERATION_PROMPTS
