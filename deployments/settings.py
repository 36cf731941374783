"""Every knob of the server in one typed object: the engines' limits
(``server/limits.py``), each deployment's section (``deployment_settings.py``)
and what serving itself needs (ports, auth, tracing, Serve's switches).

Values come from, in rising precedence: the defaults below (right for a
2-core laptop), the ``args`` of a Serve config YAML, environment variables
``T5ELECTRA_*`` (nested fields joined by ``__``, e.g.
``T5ELECTRA_T5__MAX_BATCH_SIZE=32``), and command-line flags.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import Field
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

from t5electra.server.limits import Limits, StrictModel

from .deployment_settings import ElectraSettings, IngressSettings, T5Settings

# Measured on a 2-core machine with the t5-small and electra-small shapes
# (docs/benchmarks.md): with both, Generate p50 at concurrency 1 fell from
# 416 to 401 ms and DetectReplacements at concurrency 16 rose from 115 to 121
# requests/s, since every hop saves a hand-off between threads.
REQUEST_PATH_SWITCHES = {
    "RAY_SERVE_RUN_USER_CODE_IN_SEPARATE_THREAD": "0",
    "RAY_SERVE_RUN_ROUTER_IN_SEPARATE_LOOP": "0",
}

HAPROXY_SWITCHES = {
    "RAY_SERVE_ENABLE_HA_PROXY": "1",
    "RAY_SERVE_DIRECT_INGRESS_MIN_DRAINING_PERIOD_S": "2",
}


class Auth(StrictModel):
    """Where the ingress finds the bearer tokens it admits (see ``deployments/auth.py``
    for the format). Neither set: authentication is off. The tokens themselves
    never pass through settings, which Ray shows in its status."""

    tokens_file: Path | None = Field(None, description="YAML file of callers (name, token, rpcs)")
    tokens_env: str = Field(
        "T5ELECTRA_AUTH_TOKENS", description="environment variable of the ingress holding the same YAML"
    )


class OpenInferenceSettings(StrictModel):
    """The Open Inference Protocol's names for the two models (``inference.GRPCInferenceService``)."""

    t5_model_name: str = Field("t5", min_length=1, description="the T5 model's name in ModelInfer and ModelMetadata")
    electra_model_name: str = Field(
        "electra", min_length=1, description="the ELECTRA model's name in ModelInfer and ModelMetadata"
    )


class TracingSettings(StrictModel):
    """OpenTelemetry tracing, exported over OTLP/gRPC, in OpenTelemetry's own
    configuration: each entry set here becomes its standard ``OTEL_*``
    variable in every replica, and ``OTEL_*`` variables of the server's
    environment reach the replicas as they are (headers, certificates,
    timeouts). Tracing is on only where an OTLP endpoint is known."""

    endpoint: str | None = Field(
        None, description="OTEL_EXPORTER_OTLP_ENDPOINT: the collector's OTLP/gRPC address, e.g. http://collector:4317"
    )
    service_name: str | None = Field(None, description="OTEL_SERVICE_NAME (t5electra when neither is set)")
    sampler: str | None = Field(
        None,
        description="OTEL_TRACES_SAMPLER (parentbased_always_on when neither is set), e.g. parentbased_traceidratio",
    )
    sampler_arg: str | None = Field(None, description="OTEL_TRACES_SAMPLER_ARG, e.g. 0.1 for a ratio sampler")

    def environment(self, environ: Mapping[str, str]) -> dict[str, str]:
        """The ``OTEL_*`` variables a replica gets: those of ``environ``,
        then these settings over them."""
        given = {key: value for key, value in environ.items() if key.startswith("OTEL_")}
        named = {
            "OTEL_EXPORTER_OTLP_ENDPOINT": self.endpoint,
            "OTEL_SERVICE_NAME": self.service_name,
            "OTEL_TRACES_SAMPLER": self.sampler,
            "OTEL_TRACES_SAMPLER_ARG": self.sampler_arg,
        }
        return {**given, **{key: value for key, value in named.items() if value is not None}}


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
    front: Literal["proxy", "haproxy"] = Field(
        "proxy",
        description="what answers on `port`: Ray Serve's Python gRPC proxy, or HAProxy in front of each ingress "
        "replica's own gRPC server (Serve's direct ingress: no Python proxy on the request path; "
        "docs/operations.md says what else it changes)",
    )
    t5: T5Settings = Field(default_factory=T5Settings)
    electra: ElectraSettings = Field(default_factory=ElectraSettings)
    ingress: IngressSettings = Field(default_factory=IngressSettings)
    limits: Limits = Field(default_factory=Limits)
    auth: Auth = Field(default_factory=Auth)
    open_inference: OpenInferenceSettings = Field(default_factory=OpenInferenceSettings)
    tracing: TracingSettings = Field(default_factory=TracingSettings)
    ray_serve_env: dict[str, str] = Field(
        default_factory=lambda: dict(REQUEST_PATH_SWITCHES),
        description="Ray Serve switches set in every replica's environment (and in the Ray that "
        "`t5electra serve` starts): by default user code and the handle router run on the replica's "
        "main event loop instead of threads of their own",
    )

    def serve_switches(self) -> dict[str, str]:
        """``ray_serve_env`` and what ``front`` needs of Serve: for HAProxy,
        direct ingress with a short drain (Serve's own 30 s minimum is for
        outside balancers; HAProxy learns of a draining replica from Serve)."""
        front = HAPROXY_SWITCHES if self.front == "haproxy" else {}
        return {**front, **self.ray_serve_env}

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        # The YAML's args travel as one reserved init argument of this call,
        # taken out here so that they rank below the environment.
        yaml_args = init_settings.init_kwargs.pop(_YAML_ARGS, {})  # type: ignore[attr-defined]
        return (init_settings, env_settings, _YamlArgs(settings_cls, yaml_args))

    @classmethod
    def load(cls, config: Path | None = None, *, yaml_args: dict[str, Any] | None = None, **overrides: Any) -> Settings:
        """Defaults < the application args of ``config`` (a Serve config YAML)
        or ``yaml_args`` < environment < ``overrides`` (None values ignored)."""
        args = dict(yaml_args or {})
        if config is not None:
            args = {**args_from_serve_config(yaml.safe_load(Path(config).read_text()) or {}), **args}
        return cls(**{k: v for k, v in overrides.items() if v is not None}, **{_YAML_ARGS: args})


_YAML_ARGS = "_serve_config_args"


class _YamlArgs(PydanticBaseSettingsSource):
    """The ``args`` of the first application of a Serve config YAML, and its
    ``grpc_options.port``, as the lowest-precedence source of settings."""

    def __init__(self, settings_cls: type[BaseSettings], args: dict[str, Any]) -> None:
        super().__init__(settings_cls)
        self._args = args

    def get_field_value(self, field: Any, field_name: str) -> tuple[Any, str, bool]:
        raise NotImplementedError("read through __call__")

    def __call__(self) -> dict[str, Any]:
        return dict(self._args)


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
