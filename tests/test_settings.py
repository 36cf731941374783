"""Settings precedence and the shipped Serve config files."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from pydantic import ValidationError
from ray.serve import Application
from ray.serve.schema import ServeDeploySchema

from t5electra.deployments.app import GRPC_SERVICER_FUNCTIONS, build
from t5electra.deployments.settings import Settings
from t5electra.server.embedded import TINY_ELECTRA, TINY_ELECTRA_GENERATOR, TINY_T5

from support import REPOSITORY

pytestmark = pytest.mark.unit

CONFIGS = sorted((REPOSITORY / "deployments").glob("*.yaml"))


def test_defaults_suit_a_small_cpu_machine() -> None:
    settings = Settings.load()
    assert settings.port == 9000
    assert (settings.t5.model, settings.electra.model) == (TINY_T5, TINY_ELECTRA)
    assert settings.t5.num_gpus == settings.electra.num_gpus == 0
    assert settings.t5.num_cpus <= 0.5 and settings.ingress.num_cpus <= 0.5
    assert settings.t5.ongoing_limit() >= settings.t5.max_batch_size
    assert settings.electra.ongoing_limit() >= settings.electra.max_batch_size * settings.electra.max_concurrent_batches


def test_the_embedded_generator_comes_with_the_embedded_discriminator_only(monkeypatch: pytest.MonkeyPatch) -> None:
    assert Settings.load().electra.generator_model == TINY_ELECTRA_GENERATOR
    hub = "google/electra-small-discriminator"
    assert Settings.load(electra={"model": hub}).electra.generator_model is None
    assert Settings.load(electra={"model": hub, "generator_model": "embedded"}).electra.generator_model == (
        TINY_ELECTRA_GENERATOR
    )
    assert Settings.load(electra={"generator_model": "none"}).electra.generator_model is None
    assert Settings.load(electra={"generator_model": None}).electra.generator_model is None
    monkeypatch.setenv("T5ELECTRA_ELECTRA__GENERATOR_MODEL", "none")
    assert Settings.load().electra.generator_model is None


def test_yaml_then_environment_then_flags(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    config = tmp_path / "serve.yaml"
    config.write_text(
        yaml.safe_dump(
            {
                "grpc_options": {"port": 9100},
                "applications": [{"name": "a", "args": {"t5": {"max_batch_size": 4, "max_queued_requests": 5}}}],
            }
        )
    )
    from_yaml = Settings.load(config)
    assert (from_yaml.port, from_yaml.app_name, from_yaml.t5.max_batch_size) == (9100, "a", 4)

    monkeypatch.setenv("T5ELECTRA_T5__MAX_BATCH_SIZE", "8")
    monkeypatch.setenv("T5ELECTRA_PORT", "9200")
    from_env = Settings.load(config)
    assert (from_env.port, from_env.t5.max_batch_size, from_env.t5.max_queued_requests) == (9200, 8, 5)

    from_flags = Settings.load(config, port=9300, t5={"model": "t5-small"})
    assert (from_flags.port, from_flags.t5.model, from_flags.t5.max_batch_size) == (9300, "t5-small", 8)


def test_unknown_or_invalid_settings_are_refused() -> None:
    with pytest.raises(ValidationError):
        Settings.load(t5={"max_batch_size": 0})
    with pytest.raises(ValidationError):
        Settings.load(t5={"no_such_knob": 1})
    with pytest.raises(ValidationError):
        Settings.load(electra={"autoscaling": {"min_replicas": 3, "max_replicas": 2}})


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.name)
def test_shipped_configs_are_valid_for_ray_and_for_us(path: Path) -> None:
    raw = yaml.safe_load(path.read_text())
    schema = ServeDeploySchema.model_validate(raw)
    assert schema.grpc_options.grpc_servicer_functions == GRPC_SERVICER_FUNCTIONS
    application = schema.applications[0]
    assert application.import_path == "t5electra.deployments.app:build"
    assert isinstance(build(application.args), Application)
    settings = Settings.load(path)
    assert settings.port == schema.grpc_options.port


def _profile(name: str) -> Settings:
    return Settings.load(next(p for p in CONFIGS if p.name == name))


def test_gpu_config_shares_one_gpu_in_half_precision() -> None:
    settings = _profile("gpu.yaml")
    for model in (settings.t5, settings.electra):
        assert model.device == "cuda" and model.dtype in ("float16", "bfloat16")
    # T5 overflows in float16; bfloat16 keeps its range.
    assert settings.t5.dtype == "bfloat16"
    at_most = settings.t5.num_gpus * settings.t5.autoscaling.max_replicas
    at_most += settings.electra.num_gpus * settings.electra.autoscaling.max_replicas
    assert at_most <= 1


def test_cluster_profile_gives_t5_whole_gpus_and_packs_electra() -> None:
    settings = _profile("cluster-gpu.yaml")
    assert settings.t5.num_gpus == 1 and settings.t5.dtype == "bfloat16"
    assert 0 < settings.electra.num_gpus < 1 and (1 / settings.electra.num_gpus).is_integer()
    for model in (settings.t5, settings.electra):
        assert model.autoscaling.max_replicas > model.autoscaling.min_replicas >= 1
    assert settings.proxy_location == "EveryNode"
    assert settings.ingress.autoscaling.min_replicas >= 2 and settings.ingress.max_replicas_per_node == 1


def test_placement_settings_reach_ray() -> None:
    settings = Settings.load(
        t5={"resources": {"edge": 0.5}, "max_replicas_per_node": 1}, ingress={"resources": {"edge": 0.1}}
    )
    t5 = settings.t5.deployment_options({"SWITCH": "0"})
    assert t5["ray_actor_options"] == {
        "num_cpus": 0.5,
        "num_gpus": 0,
        "resources": {"edge": 0.5},
        "runtime_env": {"env_vars": {"SWITCH": "0"}},
    }
    assert t5["max_replicas_per_node"] == 1
    assert "max_replicas_per_node" not in settings.electra.deployment_options({})
    ingress = settings.ingress.deployment_options({})
    assert ingress["ray_actor_options"]["resources"] == {"edge": 0.1}
    assert ingress["ray_actor_options"]["num_cpus"] == 0.1 and "num_gpus" not in ingress["ray_actor_options"]


def test_every_deployment_gets_the_same_kinds_of_options() -> None:
    settings = Settings.load()
    t5, electra, ingress = (m.deployment_options({}) for m in (settings.t5, settings.electra, settings.ingress))
    assert set(t5) == set(electra) == set(ingress)
    assert t5["autoscaling_config"] == settings.t5.autoscaling.model_dump()
    assert ingress["autoscaling_config"] == settings.ingress.autoscaling.model_dump()
    scaling = ingress["autoscaling_config"]
    assert (scaling["min_replicas"], scaling["max_replicas"], scaling["target_ongoing_requests"]) == (1, 1, 128.0)
    assert (ingress["max_ongoing_requests"], ingress["max_queued_requests"]) == (256, 512)
    assert t5["max_ongoing_requests"] == settings.t5.max_batch_size * (1 + settings.t5.queued_batches)
    assert (t5["max_surge_percent"], t5["graceful_shutdown_wait_loop_s"]) == (100, 0.5)


def test_every_deployment_has_the_same_shared_fields() -> None:
    settings = Settings.load()
    shared = set(type(settings.ingress).model_fields)
    assert shared <= set(type(settings.t5).model_fields) and shared <= set(type(settings.electra).model_fields)
    assert "max_concurrent_batches" not in type(settings.t5).model_fields


def test_the_ingress_shares_detect_calls_only_where_autoscaling_cannot_miss_them() -> None:
    assert Settings.load().electra.ingress_calls() == 2, "one replica, fixed: calls shared"
    scaling = Settings.load(electra={"autoscaling": {"min_replicas": 1, "max_replicas": 4}}).electra
    assert scaling.ingress_calls() == 0, "Ray's autoscaling counts calls: an autoscaled deployment gets one a request"
    assert Settings.load(electra={"ingress_calls_per_replica": 3}).electra.ingress_calls() == 3
    off = Settings.load(electra={"ingress_calls_per_replica": 0, "autoscaling": {"min_replicas": 2, "max_replicas": 2}})
    assert off.electra.ingress_calls() == 0
    with pytest.raises(ValidationError):
        Settings.load(electra={"ingress_calls_per_replica": -1})


def test_ingress_scaling_keeps_its_own_defaults_under_what_a_config_sets() -> None:
    with pytest.raises(ValidationError, match="min_replicas"):
        Settings.load(yaml_args={"ingress": {"min_replicas": 2}})
    new = Settings.load(ingress={"autoscaling": {"max_replicas": 3}})
    assert (new.ingress.autoscaling.max_replicas, new.ingress.autoscaling.target_ongoing_requests) == (3, 128.0)


def test_yaml_args_of_one_load_never_reach_the_next() -> None:
    assert Settings.load(yaml_args={"t5": {"max_batch_size": 4}}).t5.max_batch_size == 4
    assert Settings.load().t5.max_batch_size == 16


def _setting_names(model: object, prefix: str = "") -> list[str]:
    from pydantic import BaseModel

    names = []
    for name in type(model).model_fields:
        value = getattr(model, name)
        if isinstance(value, BaseModel) and name != "autoscaling":
            names += _setting_names(value, f"{prefix}{name}.")
        else:
            names.append(prefix + name)
    return names


def test_the_configuration_page_names_every_setting() -> None:
    page = (REPOSITORY / "docs" / "configuration.md").read_text()
    shared = set(type(Settings.load().ingress).model_fields)
    missing = [
        name
        for name in _setting_names(Settings.load())
        if f"`{name}`" not in page and not (name.split(".", 1)[-1] in shared and f"`*.{name.split('.', 1)[1]}`" in page)
    ]
    assert not missing, f"docs/configuration.md leaves out {missing}"
