"""Every knob of the server in one typed object.

Values come from, in rising precedence: the defaults below (right for a
2-core laptop), the ``args`` of a Serve config YAML, environment variables
``T5ELECTRA_*`` (nested fields joined by ``__``, e.g.
``T5ELECTRA_T5__MAX_BATCH_SIZE=32``), and command-line flags.
"""

from __future__ import annotations

from importlib.resources import files
from pathlib import Path
from typing import Any, ClassVar, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, model_validator
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

CHECKPOINTS = files("t5electra.server") / "checkpoints"
TINY_T5 = str(CHECKPOINTS / "tiny-t5")
TINY_ELECTRA = str(CHECKPOINTS / "tiny-electra")
TINY_ELECTRA_GENERATOR = str(CHECKPOINTS / "tiny-electra-generator")


# Measured on a 2-core machine with the t5-small and electra-small shapes
# (README, "Benchmarks"): with both, Generate p50 at concurrency 1 fell from
# 416 to 401 ms and DetectReplacements at concurrency 16 rose from 115 to 121
# requests/s, since every hop saves a hand-off between threads.
REQUEST_PATH_SWITCHES = {
    "RAY_SERVE_RUN_USER_CODE_IN_SEPARATE_THREAD": "0",
    "RAY_SERVE_RUN_ROUTER_IN_SEPARATE_LOOP": "0",
}


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Auth(_Strict):
    """Where the ingress finds the bearer tokens it admits (see ``server/auth.py``
    for the format). Neither set: authentication is off. The tokens themselves
    never pass through settings, which Ray shows in its status."""

    tokens_file: Path | None = Field(None, description="YAML file of callers (name, token, rpcs)")
    tokens_env: str = Field(
        "T5ELECTRA_AUTH_TOKENS", description="environment variable of the ingress holding the same YAML"
    )


class Limits(_Strict):
    """Bounds on what one request may ask for; violations are INVALID_ARGUMENT."""

    max_request_bytes: int = Field(
        4 * 1024 * 1024,
        ge=64 * 1024,
        description="largest request (and response) message Ray's gRPC proxy accepts; larger ones get "
        "RESOURCE_EXHAUSTED from gRPC before they are read",
    )
    max_input_chars: int = Field(20_000, ge=1, description="characters of request text")
    max_generation_input_tokens: int = Field(512, ge=1, description="prompt tokens for Generate")
    max_detection_input_tokens: int = Field(4096, ge=1, description="tokens for DetectReplacements, over all windows")
    max_new_tokens: int = Field(512, ge=1)
    max_num_beams: int = Field(8, ge=1)
    max_num_return_sequences: int = Field(8, ge=1)
    max_stop_sequences: int = Field(8, ge=0)
    max_stop_sequence_chars: int = Field(64, ge=1)
    max_top_logprobs: int = Field(10, ge=0, le=10, description="alternatives per generated token")
    max_suggestions: int = Field(10, ge=0, le=10, description="suggestions per replaced word")


class Autoscaling(_Strict):
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


class Placement(_Strict):
    """Where a deployment's replicas may run on a Ray cluster, beyond CPUs and GPUs."""

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
        "this long (Ray's default, 10 s, left a crashed replica unnoticed for 12 s)",
    )

    max_surge_percent: int = Field(
        100,
        ge=0,
        le=100,
        description="extra replicas a rollout may start before it stops old ones; Ray's default, 0, stops "
        "a single replica before its successor runs, and every request in between fails",
    )

    def lifecycle_options(self) -> dict[str, Any]:
        """How Serve checks, replaces and stops this deployment's replicas;
        Serve checks every half second whether a stopping replica is done."""
        return {
            "health_check_period_s": self.health_check_period_s,
            "graceful_shutdown_timeout_s": self.graceful_shutdown_timeout_s,
            "graceful_shutdown_wait_loop_s": 0.5,
            "max_surge_percent": self.max_surge_percent,
        }

    def placement_options(self) -> dict[str, Any]:
        """Deployment options for Ray Serve; unset ones are left to Ray."""
        if self.max_replicas_per_node is None:
            return {}
        return {"max_replicas_per_node": self.max_replicas_per_node}


class ModelDeployment(Placement):
    """One model deployment: which checkpoint, how it batches, scales and runs."""

    model: str = Field(description="hub id or local path of a save_pretrained directory")
    device: Literal["auto", "cpu", "cuda"] = Field(
        "auto", description="auto: cuda when the replica was given a GPU, else cpu"
    )
    dtype: Literal["auto", "float32", "float16", "bfloat16"] = Field(
        "auto", description="auto: float32; float16/bfloat16 only on cuda"
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
    num_cpus: float = Field(0.5, ge=0)
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
        return {"num_cpus": self.num_cpus, "num_gpus": self.num_gpus, "resources": dict(self.resources)}


class T5Deployment(ModelDeployment):
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
    def _one_loop(self) -> T5Deployment:
        if self.max_concurrent_batches != 1:
            raise ValueError(
                f"t5.max_concurrent_batches is {self.max_concurrent_batches}: a T5 replica decodes in one loop; "
                "raise max_batch_size or the replica count instead"
            )
        return self


class ElectraDeployment(ModelDeployment):
    model: str = Field(TINY_ELECTRA, description="hub id or path of an ELECTRA discriminator")
    max_batch_size: int = Field(32, ge=1)
    generator_model: str | None = Field(
        None,
        description="hub id or path of an ELECTRA generator (masked language model) for suggestions, "
        "'embedded' for the embedded tiny one; unset, suggestions are off (FAILED_PRECONDITION)",
    )

    @model_validator(mode="after")
    def _embedded_generator(self) -> ElectraDeployment:
        if self.generator_model == "embedded":
            self.generator_model = TINY_ELECTRA_GENERATOR
        return self


class Ingress(Placement):
    """The light deployment in front of the models: validation and routing."""

    num_cpus: float = Field(0.1, ge=0)
    max_ongoing_requests: int = Field(256, ge=1)
    max_queued_requests: int = Field(512, ge=-1)
    min_replicas: int = Field(1, ge=1)
    max_replicas: int = Field(1, ge=1)
    target_ongoing_requests: float = Field(
        128.0, gt=0, description="requests in flight per ingress replica that autoscaling aims at"
    )

    def ray_actor_options(self) -> dict[str, Any]:
        return {"num_cpus": self.num_cpus, "resources": dict(self.resources)}

    def autoscaling(self) -> dict[str, Any]:
        return {
            "min_replicas": self.min_replicas,
            "max_replicas": self.max_replicas,
            "target_ongoing_requests": self.target_ongoing_requests,
        }


class Settings(BaseSettings):
    """The whole server's configuration; ``args`` of the Serve application."""

    model_config = SettingsConfigDict(
        env_prefix="T5ELECTRA_", env_nested_delimiter="__", extra="forbid", nested_model_default_partial_update=True
    )

    port: int = Field(9000, ge=1, le=65535, description="port of Ray Serve's gRPC proxy")
    http_port: int = Field(8000, ge=1, le=65535, description="port of Ray Serve's HTTP proxy, bound to 127.0.0.1")
    metrics_port: int = Field(
        8080, ge=1, le=65535, description="Prometheus endpoint of a Ray started by `t5electra serve`"
    )
    app_name: str = Field("t5electra", description="Serve application name")
    proxy_location: Literal["EveryNode", "HeadOnly", "Disabled"] = Field(
        "EveryNode",
        description="where `t5electra serve` starts Ray Serve's proxies; a load balancer or Kubernetes "
        "Service in front of every node wants EveryNode",
    )
    route_prefix: str = Field("/t5electra", description="Serve route prefix; gRPC needs one")
    t5: T5Deployment = Field(default_factory=T5Deployment)
    electra: ElectraDeployment = Field(default_factory=ElectraDeployment)
    ingress: Ingress = Field(default_factory=Ingress)
    limits: Limits = Field(default_factory=Limits)
    auth: Auth = Field(default_factory=Auth)
    ray_serve_env: dict[str, str] = Field(
        default_factory=lambda: dict(REQUEST_PATH_SWITCHES),
        description="Ray Serve switches set in every replica's environment (and in the Ray that "
        "`t5electra serve` starts): by default user code and the handle router run on the replica's "
        "main event loop instead of threads of their own",
    )

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        return (init_settings, env_settings, _YamlArgs(settings_cls))

    @classmethod
    def load(cls, config: Path | None = None, *, yaml_args: dict[str, Any] | None = None, **overrides: Any) -> Settings:
        """Defaults < the application args of ``config`` (a Serve config YAML)
        or ``yaml_args`` < environment < ``overrides`` (None values ignored)."""
        args = dict(yaml_args or {})
        if config is not None:
            args = {**args_from_serve_config(yaml.safe_load(Path(config).read_text()) or {}), **args}
        _YamlArgs.args = args
        try:
            return cls(**{k: v for k, v in overrides.items() if v is not None})
        finally:
            _YamlArgs.args = {}


class _YamlArgs(PydanticBaseSettingsSource):
    """The ``args`` of the first application of a Serve config YAML, and its
    ``grpc_options.port``, as the lowest-precedence source of settings.

    pydantic-settings instantiates sources itself, so :meth:`Settings.load`
    hands the parsed args over through a class attribute for one call."""

    args: ClassVar[dict[str, Any]] = {}

    def get_field_value(self, field: Any, field_name: str) -> tuple[Any, str, bool]:
        raise NotImplementedError("read through __call__")

    def __call__(self) -> dict[str, Any]:
        return dict(self.args)


def args_from_serve_config(config: dict[str, Any]) -> dict[str, Any]:
    """Settings fields found in a parsed Serve config: the first
    application's ``args``, plus its name, route prefix and the ports."""
    application = (config.get("applications") or [{}])[0]
    args = dict(application.get("args") or {})
    found = {
        "app_name": application.get("name"),
        "route_prefix": application.get("route_prefix"),
        "proxy_location": config.get("proxy_location"),
        "port": (config.get("grpc_options") or {}).get("port"),
        "http_port": (config.get("http_options") or {}).get("port"),
    }
    for key, value in found.items():
        if value is not None:
            args.setdefault(key, value)
    return args
