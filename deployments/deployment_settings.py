"""Settings of the three deployments (the T5 and ELECTRA models and the
ingress): what each loads, how it batches, scales and is placed, and the
Ray Serve options built from them. ``settings.Settings`` holds one of each."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import Field, model_validator

from t5electra.server.embedded import TINY_ELECTRA, TINY_ELECTRA_GENERATOR, TINY_T5
from t5electra.server.limits import StrictModel


class Autoscaling(StrictModel):
    """Ray Serve's ``autoscaling_config`` for one deployment."""

    min_replicas: int = Field(1, ge=0)
    max_replicas: int = Field(1, ge=1)
    target_ongoing_requests: float = Field(8.0, gt=0)
    upscale_delay_s: float = Field(10.0, ge=0)
    downscale_delay_s: float = Field(60.0, ge=0)
    look_back_period_s: float = Field(
        30.0, gt=0, description="window of load figures averaged; Ray wants it above its 10 s metrics interval"
    )

    @model_validator(mode="after")
    def _ordered(self) -> Autoscaling:
        if self.max_replicas < self.min_replicas:
            raise ValueError(f"max_replicas ({self.max_replicas}) < min_replicas ({self.min_replicas})")
        return self

    def to_serve(self) -> dict[str, Any]:
        return self.model_dump()


class DeploymentSettings(StrictModel):
    """What every deployment has, with the same names and meaning: where its
    replicas run, how many (autoscaling), how many requests each holds and
    how many wait in Ray's router before RESOURCE_EXHAUSTED, and how Serve
    starts, checks and stops them. Each deployment adds its own fields."""

    num_cpus: float = Field(0.5, ge=0)
    resources: dict[str, float] = Field(
        default_factory=dict,
        description="Ray custom resources each replica needs, e.g. a resource only one node group "
        "declares (`ray start --resources`) to keep replicas on it",
    )
    max_replicas_per_node: int | None = Field(
        None,
        ge=1,
        description="spreads replicas over nodes, so that losing a node loses at most this many; replicas "
        "that find no node stay pending until one joins",
    )
    autoscaling: Autoscaling = Field(default_factory=Autoscaling)
    max_ongoing_requests: int | None = Field(
        None,
        ge=1,
        description="requests a replica holds at once, running or waiting inside it (Ray Serve's option of "
        "that name); unset, each deployment derives it (see ongoing_limit)",
    )
    max_queued_requests: int = Field(
        64, ge=-1, description="requests waiting in Ray's router for a replica before RESOURCE_EXHAUSTED; -1 unbounded"
    )
    graceful_shutdown_timeout_s: float = Field(
        20.0,
        ge=0,
        description="when a replica stops (a rollout, a scale-down, a drain, a stop), how long its requests "
        "in flight may take to finish; Serve routes no new ones to it meanwhile, and those still running after "
        "this get UNAVAILABLE",
    )
    health_check_period_s: float = Field(
        2.0,
        gt=0,
        description="how often Serve's controller checks a replica; a dead one is replaced after about "
        "this long (Ray's default, 10 s, leaves a crashed replica unnoticed that long)",
    )
    max_surge_percent: int = Field(
        100,
        ge=0,
        le=100,
        description="extra replicas a rollout may start before it stops old ones; Ray's default, 0, stops "
        "a single replica before its successor runs, and every request in between fails",
    )

    def ongoing_limit(self) -> int:
        """``max_ongoing_requests`` as Ray gets it."""
        return self.max_ongoing_requests or 5  # Ray Serve's own default

    def deployment_options(self, env_vars: dict[str, str]) -> dict[str, Any]:
        """Ray Serve's options for this deployment, built the same way for
        all three; ``env_vars`` go into each replica's runtime environment.
        Unset placement options are left to Ray. Serve checks every half
        second whether a stopping replica is done."""
        placement = {} if self.max_replicas_per_node is None else {"max_replicas_per_node": self.max_replicas_per_node}
        return {
            "autoscaling_config": self.autoscaling.to_serve(),
            "max_ongoing_requests": self.ongoing_limit(),
            "max_queued_requests": self.max_queued_requests,
            "ray_actor_options": {**self.ray_actor_options(), "runtime_env": {"env_vars": dict(env_vars)}},
            "logging_config": {"enable_access_log": False},
            "health_check_period_s": self.health_check_period_s,
            "graceful_shutdown_timeout_s": self.graceful_shutdown_timeout_s,
            "graceful_shutdown_wait_loop_s": 0.5,
            "max_surge_percent": self.max_surge_percent,
            **placement,
        }

    def ray_actor_options(self) -> dict[str, Any]:
        return {"num_cpus": self.num_cpus, "resources": dict(self.resources)}


class ModelSettings(DeploymentSettings):
    """One model deployment: which checkpoint, in which precision, how it batches."""

    model: str = Field(description="hub id or local path of a save_pretrained directory")
    device: Literal["auto", "cpu", "cuda"] = Field(
        "auto", description="auto: cuda when the replica was given a GPU, else cpu"
    )
    dtype: Literal["auto", "float32", "bfloat16", "float16", "int8"] = Field(
        "auto",
        description="auto: float32, equal to transformers; bfloat16 on cuda or a CPU with AVX512-BF16/AMX; "
        "float16 on cuda; int8 (int8 weights, activations quantized per token) on CPU",
    )
    max_batch_size: int = Field(16, ge=1)
    batch_wait_timeout_s: float = Field(
        0.0,
        ge=0,
        description="how long an idle replica waits after a first request for a batch to fill; requests "
        "that arrive while it is busy batch anyway, so 0 suits CPUs, where a larger batch costs more",
    )
    num_gpus: float = Field(0, ge=0)
    torch_threads: int | None = Field(
        None,
        ge=1,
        description="intra-op threads of a replica; unset, Ray's OMP_NUM_THREADS applies, which follows "
        "num_cpus (at least 1)",
    )
    queued_batches: int = Field(
        3,
        ge=1,
        description="full batches a replica holds waiting beyond the ones running (when max_ongoing_requests "
        "is unset); past that Ray's router holds requests (up to max_queued_requests) and polls the replica "
        "with backoff, which is far slower",
    )
    compile: bool = Field(
        False,
        description="int8/bfloat16: compile T5's decoder step or ELECTRA's forward (two graphs: 1 row, more) before "
        "the replica reports ready (about a minute, less with inductor's disk cache); float32 stays eager",
    )

    @model_validator(mode="after")
    def _compilable(self) -> ModelSettings:
        if self.compile and self.dtype not in ("int8", "bfloat16"):
            raise ValueError(f"compile needs dtype int8 or bfloat16 (float32 stays eager), got {self.dtype}")
        return self

    def batches_at_once(self) -> int:
        return 1

    def ongoing_limit(self) -> int:
        """Unless set: room for the running batches and ``queued_batches`` more.
        Ray's default of 5 would cap batches at 5; requests waiting inside
        the replica join the next batch at once, while requests held in Ray's
        router wait on exponential backoff (Generate at concurrency 64 with
        room for two batches: 6.6 req/s, p50 6.5 s)."""
        if self.max_ongoing_requests is not None:
            return self.max_ongoing_requests
        return self.max_batch_size * (self.batches_at_once() + self.queued_batches)

    def ray_actor_options(self) -> dict[str, Any]:
        return {**super().ray_actor_options(), "num_gpus": self.num_gpus}


class T5Settings(ModelSettings):
    model: str = Field(TINY_T5, description="hub id or path of a seq2seq (T5-family) checkpoint")
    max_batch_size: int = Field(16, ge=1, description="rows decoding at once (a request takes num_return_sequences)")
    scheduler: Literal["continuous", "static"] = Field(
        "continuous",
        description="continuous: requests join the decoding batch at every step and leave when done; "
        "static: a batch decodes until its longest request ends before others join",
    )

    # 50 ms (20 messages a second): smooth to a reader, and several steps of a small model on a CPU, where
    # each message costs the replica, the ingress and the proxy a Ray streaming item (one per token made
    # streams cost 2.5x the server CPU of Generate). serving_cost.py --rpcs generate generate-stream --sizes
    # small --dtype int8, c=16, alternating 0.02/0.05: GenerateStream 593/512 -> 615/684 tokens/s, server
    # CPU 58.1/66.0 -> 52.7/47.7 ms a request (0.1: 696, 45.9 ms); 0 -> 0.02 (tiny): 997/921 -> 1265/1114.
    stream_interval_s: float = Field(
        0.05,
        ge=0,
        description="GenerateStream: pieces made within this long after the previous message travel "
        "together as one (the first and the last piece never wait); 0 sends one per token",
    )
    batch_wait_timeout_s: float = Field(
        0.0,
        ge=0,
        description="how long an idle T5 replica waits after a first request for others to join its first "
        "step; a busy one admits arrivals at the next step anyway",
    )
    admission_margin: float = Field(
        1.2,
        ge=1.0,
        description="step-time estimates are multiplied by this before they are held against a request's "
        "deadline: a request whose least work alone would not fit is refused at once (DEADLINE_EXCEEDED), one "
        "that would answer after it behind the work queued is refused at once (RESOURCE_EXHAUSTED, with pushback)",
    )


AUTO_INGRESS_CALLS = 2
"""Calls out per ELECTRA replica under ``auto``. Measured (serving_cost.py
--rpcs detect --sizes small --dtype int8, c=16) 1, 2 and 4 alike within
the noise (served ÷ engine 0.29, 0.28-0.29, 0.27); 2 lets one call fill
while another is scored, for replicas whose batch outlasts the hop's round
trip."""


class ElectraSettings(ModelSettings):
    model: str = Field(TINY_ELECTRA, description="hub id or path of an ELECTRA discriminator")
    max_batch_size: int = Field(32, ge=1)
    max_concurrent_batches: int = Field(
        1, ge=1, description="batches scoring at once, each on a thread of its own (more suits a GPU)"
    )
    max_batch_tokens: int = Field(
        8192,
        ge=1,
        description="tokens a batch may hold: the batcher cuts a batch when its requests' tokens would pass "
        "this (a longer request runs alone), and a forward pass holds at most this many padded tokens, rows "
        "sorted by length",
    )
    generator_model: str | None = Field(
        "auto",
        description="hub id or path of an ELECTRA generator (masked language model) for suggestions; "
        "'embedded' for the embedded tiny one; 'auto': the embedded one when the embedded discriminator is "
        "served (they share a vocabulary), none otherwise; 'none' (or null): suggestions off (FAILED_PRECONDITION)",
    )
    ingress_calls_per_replica: Annotated[int, Field(ge=0)] | Literal["auto"] = Field(
        "auto",
        description="DetectReplacements calls each ingress replica keeps out to each ELECTRA replica, each carrying "
        "every request that arrived while the others were out (one Ray call's cost shared by a batch); 0: one "
        "call per request. Ray's autoscaling counts calls, not texts: `auto` is 2 when this deployment's replica "
        "count is fixed (min = max) and 0 when it autoscales",
    )

    @model_validator(mode="after")
    def _checked(self) -> ElectraSettings:
        # A generator must share the discriminator's vocabulary: the embedded
        # one goes with the embedded discriminator only, unless asked for.
        if self.generator_model == "auto":
            self.generator_model = TINY_ELECTRA_GENERATOR if self.model == TINY_ELECTRA else None
        elif self.generator_model == "embedded":
            self.generator_model = TINY_ELECTRA_GENERATOR
        elif self.generator_model in ("none", ""):
            self.generator_model = None
        return self

    def ingress_calls(self) -> int:
        """``ingress_calls_per_replica`` with ``auto`` resolved."""
        if self.ingress_calls_per_replica != "auto":
            return self.ingress_calls_per_replica
        fixed = self.autoscaling.min_replicas == self.autoscaling.max_replicas
        return AUTO_INGRESS_CALLS if fixed else 0

    def batches_at_once(self) -> int:
        return self.max_concurrent_batches


_INGRESS_SCALING_DEFAULTS = {"min_replicas": 1, "max_replicas": 1, "target_ongoing_requests": 128.0}


class IngressSettings(DeploymentSettings):
    """The light deployment in front of the models: conversion, auth and routing."""

    num_cpus: float = Field(0.1, ge=0)
    autoscaling: Autoscaling = Field(default_factory=lambda: Autoscaling(**_INGRESS_SCALING_DEFAULTS))
    max_ongoing_requests: int | None = Field(256, ge=1, description="requests an ingress replica holds at once")
    max_queued_requests: int = Field(512, ge=-1)

    @model_validator(mode="before")
    @classmethod
    def _scaling(cls, values: Any) -> Any:
        """The ingress's own autoscaling defaults under whatever a config
        sets (the models' defaults differ)."""
        if not isinstance(values, dict) or not isinstance(values.get("autoscaling"), dict):
            return values
        return {**values, "autoscaling": {**_INGRESS_SCALING_DEFAULTS, **values["autoscaling"]}}
