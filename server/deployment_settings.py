"""Settings of the three deployments (the T5 and ELECTRA models and the
ingress): what each loads, how it batches, scales and is placed, and the
Ray Serve options built from them. ``settings.Settings`` holds one of each."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from .embedded import TINY_ELECTRA, TINY_ELECTRA_GENERATOR, TINY_T5


class StrictModel(BaseModel):
    """A settings section that rejects unknown keys (a typo in a YAML fails loudly)."""

    model_config = ConfigDict(extra="forbid")


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


class PlacementSettings(StrictModel):
    """What every deployment shares: where its replicas may run on a Ray
    cluster beyond CPUs and GPUs, and how Serve starts, checks and stops
    them. Subclasses add their model, batching and scaling fields."""

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

    def deployment_options(self, env_vars: dict[str, str]) -> dict[str, Any]:
        """Ray Serve's options for this deployment, built the same way for
        all three; ``env_vars`` go into each replica's runtime environment.
        Unset placement options are left to Ray. Serve checks every half
        second whether a stopping replica is done."""
        placement = {} if self.max_replicas_per_node is None else {"max_replicas_per_node": self.max_replicas_per_node}
        return {
            "autoscaling_config": self.autoscaling_config(),
            "max_ongoing_requests": self.max_ongoing_requests,
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

    def autoscaling_config(self) -> dict[str, Any]:
        raise NotImplementedError("each deployment's settings say how it scales")


class ModelSettings(PlacementSettings):
    """One model deployment: which checkpoint, how it batches, scales and runs."""

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
        description="how long an idle replica waits for a batch to fill; requests that arrive while it is "
        "busy batch anyway, so 0 suits CPUs, where a larger batch costs more",
    )
    max_concurrent_batches: int = Field(1, ge=1)
    max_queued_requests: int = Field(
        64, ge=-1, description="requests waiting for a replica before RESOURCE_EXHAUSTED; -1 unbounded"
    )
    autoscaling: Autoscaling = Field(default_factory=Autoscaling)
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
        description="full batches a replica holds waiting beyond the ones running; past that Ray's router "
        "holds requests (up to max_queued_requests) and polls the replica with backoff, which is far slower",
    )

    @property
    def max_ongoing_requests(self) -> int:
        """Ray's default of 5 would cap batches at 5. Requests waiting inside
        the replica cost nothing and join the next batch at once; requests
        held in Ray's router wait on exponential backoff (Generate at
        concurrency 64 with room for two batches: 6.6 req/s, p50 6.5 s)."""
        return self.max_batch_size * (self.max_concurrent_batches + self.queued_batches)

    def ray_actor_options(self) -> dict[str, Any]:
        return {**super().ray_actor_options(), "num_gpus": self.num_gpus}

    def autoscaling_config(self) -> dict[str, Any]:
        return self.autoscaling.to_serve()


class T5Settings(ModelSettings):
    model: str = Field(TINY_T5, description="hub id or path of a seq2seq (T5-family) checkpoint")
    max_batch_size: int = Field(16, ge=1, description="rows decoding at once (a request takes num_return_sequences)")
    scheduler: Literal["continuous", "static"] = Field(
        "continuous",
        description="continuous: requests join the decoding batch at every step and leave when done; "
        "static: a batch decodes until its longest request ends before others join",
    )

    stream_interval_s: float = Field(
        0.0,
        ge=0,
        description="GenerateStream: pieces made within this long after the previous message travel "
        "together as one (the first and the last piece never wait); 0 sends one per token",
    )

    @model_validator(mode="after")
    def _one_loop(self) -> T5Settings:
        if self.max_concurrent_batches != 1:
            raise ValueError(
                f"t5.max_concurrent_batches is {self.max_concurrent_batches}: a T5 replica decodes in one loop; "
                "raise max_batch_size or the replica count instead"
            )
        return self


class ElectraSettings(ModelSettings):
    model: str = Field(TINY_ELECTRA, description="hub id or path of an ELECTRA discriminator")
    max_batch_size: int = Field(32, ge=1)
    max_batch_tokens: int = Field(
        8192,
        ge=1,
        description="tokens a batch may hold: the batcher cuts a batch when its requests' tokens would pass "
        "this (a longer request runs alone), and a forward pass holds at most this many padded tokens, rows "
        "sorted by length",
    )
    generator_model: str | None = Field(
        None,
        description="hub id or path of an ELECTRA generator (masked language model) for suggestions, "
        "'embedded' for the embedded tiny one; unset, suggestions are off (FAILED_PRECONDITION)",
    )

    @model_validator(mode="after")
    def _embedded_generator(self) -> ElectraSettings:
        if self.generator_model == "embedded":
            self.generator_model = TINY_ELECTRA_GENERATOR
        return self


class IngressSettings(PlacementSettings):
    """The light deployment in front of the models: validation and routing."""

    num_cpus: float = Field(0.1, ge=0)
    max_ongoing_requests: int = Field(256, ge=1)
    max_queued_requests: int = Field(512, ge=-1)
    min_replicas: int = Field(1, ge=1)
    max_replicas: int = Field(1, ge=1)
    target_ongoing_requests: float = Field(
        128.0, gt=0, description="requests in flight per ingress replica that autoscaling aims at"
    )

    def autoscaling_config(self) -> dict[str, Any]:
        return {
            "min_replicas": self.min_replicas,
            "max_replicas": self.max_replicas,
            "target_ongoing_requests": self.target_ongoing_requests,
        }
