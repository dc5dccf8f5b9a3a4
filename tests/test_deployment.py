"""Deployment files, read as the tools would read them (no Docker engine on these machines)."""

from __future__ import annotations

import re
from pathlib import Path

import yaml

from model_registry.config import load_config
from model_registry.loading import build_model

ROOT = Path(__file__).resolve().parents[1]


def test_compose_has_service_healthcheck_models_volume_and_gpu_profile() -> None:
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    services = compose["services"]
    replicas = [services["layerscope-1"], services["layerscope-2"]]
    gpu = services["layerscope-gpu"]
    for service in (*replicas, gpu):
        assert service["healthcheck"]["test"][-1].endswith("/readyz")
        assert any(v.endswith(":/models:ro") for v in service["volumes"])
        assert service["environment"]["LAYERSCOPE_MODELS"] == "/models/models.toml"
        assert service["environment"]["LAYERSCOPE_REDIS_URL"] == "redis://redis:6379/0"
        assert all(p.startswith("127.0.0.1:") for p in service.get("ports", ()))
        assert "profiles" not in service or service is gpu
    assert gpu["profiles"] == ["gpu"]
    device = gpu["deploy"]["resources"]["reservations"]["devices"][0]
    assert device["driver"] == "nvidia" and device["capabilities"] == ["gpu"]
    assert "cuda" in gpu["build"]["args"]["BASE_IMAGE"]


def test_compose_scales_out_behind_nginx_with_an_append_only_redis() -> None:
    services = yaml.safe_load((ROOT / "docker-compose.yml").read_text())["services"]
    command = services["redis"]["command"]
    assert command[command.index("--appendonly") + 1] == "yes"
    assert any(v.endswith(":/data") for v in services["redis"]["volumes"])
    nginx = services["nginx"]
    assert "./deploy/nginx.conf:/etc/nginx/nginx.conf:ro" in nginx["volumes"]
    assert nginx["ports"] == ["127.0.0.1:8000:80"]
    conf = (ROOT / "deploy" / "nginx.conf").read_text()
    upstreams = set(re.findall(r"server (layerscope-\d+):8000", conf))
    assert upstreams == {"layerscope-1", "layerscope-2"} <= set(services)
    assert "hash $arg_image_id consistent;" in conf


def test_compose_models_file_is_a_valid_config() -> None:
    (spec,) = load_config(ROOT / "models" / "models.toml")
    assert spec.name == "digits" and build_model(spec).pretrained


def test_dockerfile_runs_as_non_root_with_a_cuda_build_argument() -> None:
    text = (ROOT / "Dockerfile").read_text()
    assert re.search(r"^ARG BASE_IMAGE=python:3\.\d+-slim$", text, re.M)
    users = re.findall(r"^USER (\S+)$", text, re.M)
    assert users and users[-1] not in ("root", "0")
    assert re.search(
        r'^CMD \["layerscope", "serve"', text, re.M
    )  # exec form: SIGTERM reaches uvicorn
    assert "HEALTHCHECK" in text and "/readyz" in text
    for folder in ("api_schemas", "model_registry", "service"):
        assert f"COPY {folder} ./{folder}" in text


def test_scale_out_example_routes_on_readiness() -> None:
    manifest = list(yaml.safe_load_all((ROOT / "deploy" / "kubernetes.yaml").read_text()))
    named = {(doc["kind"], doc["metadata"]["name"]): doc for doc in manifest}
    deployment = named[("Deployment", "layerscope")]
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert deployment["spec"]["replicas"] >= 2
    assert (
        named[("Service", "layerscope")]["spec"]["selector"]
        == deployment["spec"]["selector"]["matchLabels"]
    )
    env = {item["name"]: item.get("value") for item in container["env"]}
    assert env["LAYERSCOPE_REDIS_URL"] == "redis://layerscope-redis:6379/0"
    redis = named[("StatefulSet", "layerscope-redis")]["spec"]["template"]["spec"]
    args = redis["containers"][0]["args"]
    assert args[args.index("--appendonly") + 1] == "yes"
    assert redis["containers"][0]["readinessProbe"]["exec"]["command"][:2] == ["redis-cli", "ping"]
    assert named[("Service", "layerscope-redis")]["spec"]["ports"][0]["port"] == 6379
    nginx = (ROOT / "deploy" / "nginx.conf").read_text()
    assert "proxy_next_upstream" in nginx and "http_503" in nginx
    assert nginx.count("server layerscope-") >= 2


def test_dockerfile_installs_every_runtime_dependency() -> None:
    """The image lists its dependencies for layer caching; none may drift from pyproject."""
    import tomllib

    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    names = [re.split(r"[<>=\[ ]", dep, maxsplit=1)[0] for dep in project["dependencies"]]
    text = (ROOT / "Dockerfile").read_text()
    missing = [name for name in names if f'"{name}' not in text]
    assert not missing, f"pyproject dependencies the Dockerfile does not install: {missing}"
