"""Deployment files, read as the tools would read them (no Docker engine on these machines):
hadolint, kubernetes-validate and `docker compose config` run here, installed by the dev
extra, so a missing one is a failure, not a skip."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
import yaml

from model_registry.config import load_config
from model_registry.loading import build_model
from service.settings import Settings

ROOT = Path(__file__).resolve().parents[1]
VERSION = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]


def test_compose_has_service_healthcheck_models_volume_and_gpu_profile() -> None:
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    services = compose["services"]
    replicas = [services["layerscope-1"], services["layerscope-2"]]
    gpu = services["layerscope-gpu"]
    for service in (*replicas, gpu):
        assert any("/readyz" in part for part in service["healthcheck"]["test"])
        assert any(v.endswith(":/models:ro") for v in service["volumes"])
        assert service["environment"]["LAYERSCOPE_MODELS"] == "/models/models.toml"
        assert service["environment"]["LAYERSCOPE_REDIS_URL"] == "redis://redis:6379/0"
        assert service["environment"]["LAYERSCOPE_SHARD_IMAGES"] == "256"
        assert all(p.startswith("127.0.0.1:") for p in service.get("ports", ()))
        assert "profiles" not in service or service is gpu
    assert gpu["profiles"] == ["gpu"]
    device = gpu["deploy"]["resources"]["reservations"]["devices"][0]
    assert device["driver"] == "nvidia" and device["capabilities"] == ["gpu"]
    assert gpu["build"]["args"]["TORCH_INDEX"] == "https://pypi.org/simple"  # CUDA wheels


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


def _deployed_settings() -> list[tuple[str, dict[str, str | None]]]:
    """The LAYERSCOPE_ environment each deployment example gives its replicas (None: from a
    secret)."""
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())["services"]
    manifest = yaml.safe_load_all((ROOT / "deploy" / "kubernetes.yaml").read_text())
    (pod,) = (d for d in manifest if d["kind"] == "Deployment")
    container = pod["spec"]["template"]["spec"]["containers"][0]
    return [
        ("docker-compose.yml", dict(compose["layerscope-1"]["environment"])),
        ("deploy/kubernetes.yaml", {e["name"]: e.get("value") for e in container["env"]}),
    ]


DEPLOYED = _deployed_settings()


@pytest.mark.parametrize(("source", "env"), DEPLOYED, ids=[source for source, _ in DEPLOYED])
def test_deployed_settings_are_known_and_valid(source: str, env: dict[str, str | None]) -> None:
    """A misspelt name would be ignored silently (Settings ignores extra variables), and a
    value out of range would stop every replica at start-up."""
    prefix = "LAYERSCOPE_"
    names = {name.removeprefix(prefix).lower() for name in env}
    assert all(name.startswith(prefix) for name in env), source
    assert names <= set(Settings.model_fields), (source, names - set(Settings.model_fields))
    given = {n.removeprefix(prefix).lower(): v for n, v in env.items() if v is not None}
    settings = Settings.model_validate(given)
    assert settings.shard_images == 256 and settings.redis_url is not None, source


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
    assert env["LAYERSCOPE_SHARD_IMAGES"] == "256"
    redis = named[("StatefulSet", "layerscope-redis")]["spec"]["template"]["spec"]
    args = redis["containers"][0]["args"]
    assert args[args.index("--appendonly") + 1] == "yes"
    assert redis["containers"][0]["readinessProbe"]["exec"]["command"][:2] == ["redis-cli", "ping"]
    assert named[("Service", "layerscope-redis")]["spec"]["ports"][0]["port"] == 6379
    nginx = (ROOT / "deploy" / "nginx.conf").read_text()
    assert "proxy_next_upstream" in nginx and "http_503" in nginx
    assert nginx.count("server layerscope-") >= 2


def _tool(name: str) -> str:
    """The dev extra's copy of a command-line tool (beside this interpreter), else PATH's."""
    found = shutil.which(name, path=str(Path(sys.executable).parent)) or shutil.which(name)
    assert found, f"{name} is missing: `make install-dev` installs it from the dev extra"
    return found


def _run(*command: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=120)


def test_dockerfile_is_hadolint_clean() -> None:
    result = _run(_tool("hadolint"), "--no-color", "Dockerfile")
    assert result.returncode == 0 and not result.stdout.strip(), result.stdout + result.stderr
    assert "hadolint ignore" not in (ROOT / "Dockerfile").read_text()


def test_dockerfile_installs_the_lock_and_the_makefiles_torch() -> None:
    """torch at the Makefile's TORCH_SPEC; every other runtime dependency from pyproject's
    list, constrained to the lock's version; nothing unpinned and no dev tool."""
    text = (ROOT / "Dockerfile").read_text()
    makefile = (ROOT / "Makefile").read_text()
    torch_spec = re.search(r"^TORCH_SPEC \?= (.+)$", makefile, re.M).group(1).strip()
    assert re.search(rf'^ARG TORCH_SPEC="{re.escape(torch_spec)}"$', text, re.M)
    joined = re.sub(r"\\\n\s*", " ", text)  # continuation lines as one
    installs = re.findall(r"pip install ([^\n&]*)", joined)
    assert installs and all("-c requirements.lock" in i or "--no-deps ." in i for i in installs)
    assert "['project']['dependencies']" in text and "COPY pyproject.toml requirements.lock" in text
    lock = {
        line.split("==")[0].lower().replace("_", "-"): line.split("==")[1]
        for line in (ROOT / "requirements.lock").read_text().splitlines()
        if "==" in line
    }
    for pin in torch_spec.split():
        name, version = pin.split("==")
        assert lock[name] == version, f"requirements.lock pins {name} {lock[name]}, not {version}"
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    names = [re.split(r"[<>=\[ ;]", dep, maxsplit=1)[0] for dep in project["dependencies"]]
    names += ["uvloop", "httptools", "watchfiles", "websockets", "python-dotenv"]  # [standard]
    unpinned = [n for n in names if n.lower().replace("_", "-") not in lock]
    assert not unpinned, f"runtime dependencies the lock does not pin: {unpinned}"


def test_kubernetes_manifest_validates() -> None:
    result = _run(_tool("kubernetes-validate"), "--strict", "deploy/kubernetes.yaml")
    assert result.returncode == 0, result.stdout + result.stderr
    manifest = list(yaml.safe_load_all((ROOT / "deploy" / "kubernetes.yaml").read_text()))
    builtin = [d for d in manifest if "." not in d["apiVersion"].split("/")[0]]
    assert result.stdout.count(" passed for resource ") == len(builtin), result.stdout


def test_compose_file_is_valid_for_docker_compose() -> None:
    compose = (
        [_tool("docker-compose")]
        if shutil.which("docker-compose", path=str(Path(sys.executable).parent))
        else [_tool("docker"), "compose"]
    )
    for profile in ([], ["--profile", "gpu"]):
        result = _run(*compose, "-f", "docker-compose.yml", *profile, "config", "--quiet")
        assert result.returncode == 0, result.stdout + result.stderr


def test_images_are_released_versions_never_latest() -> None:
    manifest = list(yaml.safe_load_all((ROOT / "deploy" / "kubernetes.yaml").read_text()))
    deployment = next(d for d in manifest if d["kind"] == "Deployment")
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    assert container["image"] == f"layerscope:{VERSION}"
    services = yaml.safe_load((ROOT / "docker-compose.yml").read_text())["services"]
    ours = [s["image"] for s in services.values() if s["image"].startswith("layerscope:")]
    assert ours and all(i.split(":")[1].startswith(VERSION) for i in ours), ours
    assert not any(s["image"].endswith(":latest") for s in services.values())


def test_compose_waits_for_healthy_dependencies() -> None:
    services = yaml.safe_load((ROOT / "docker-compose.yml").read_text())["services"]
    for name, service in services.items():
        for needed, condition in service.get("depends_on", {}).items():
            assert condition == {"condition": "service_healthy"}, (name, needed)
            assert "healthcheck" in services[needed], needed
    assert set(services["nginx"]["depends_on"]) == {"layerscope-1", "layerscope-2"}


def test_prometheus_scrapes_with_the_metrics_token() -> None:
    """With keys set, /metrics answers only a key or LAYERSCOPE_METRICS_TOKEN: the pods read
    the token from a Secret and the ServiceMonitor sends it as a bearer credential."""
    assert "metrics_token" in Settings.model_fields
    manifest = list(yaml.safe_load_all((ROOT / "deploy" / "kubernetes.yaml").read_text()))
    named = {(doc["kind"], doc["metadata"]["name"]): doc for doc in manifest}
    pod = named[("Deployment", "layerscope")]["spec"]["template"]
    assert not any(k.startswith("prometheus.io/") for k in pod["metadata"].get("annotations", {}))
    env = {item["name"]: item for item in pod["spec"]["containers"][0]["env"]}
    secret = env["LAYERSCOPE_METRICS_TOKEN"]["valueFrom"]["secretKeyRef"]
    assert "secretKeyRef" in env["LAYERSCOPE_API_KEYS"]["valueFrom"]
    monitor = named[("ServiceMonitor", "layerscope")]["spec"]
    (endpoint,) = monitor["endpoints"]
    assert (endpoint["port"], endpoint["path"]) == ("http", "/metrics")
    assert endpoint["authorization"] == {"type": "Bearer", "credentials": secret}
    service = named[("Service", "layerscope")]
    assert monitor["selector"]["matchLabels"].items() <= service["metadata"]["labels"].items()


def _seconds(conf: str, directive: str) -> float:
    value = re.search(rf"^\s*{directive} (\d+)(s|m)?;", conf, re.M)
    assert value, f"deploy/nginx.conf sets no {directive}"
    return float(value.group(1)) * (60 if value.group(2) == "m" else 1)


def test_nginx_waits_as_long_as_the_service_may_work() -> None:
    """A synchronous answer may take LAYERSCOPE_JOB_TIMEOUT_S; nginx must not cut it short
    (the tests' nginx is this file too, see tests/redis_support.py)."""
    conf = (ROOT / "deploy" / "nginx.conf").read_text()
    limits = Settings()
    for directive in ("proxy_read_timeout", "proxy_send_timeout"):
        configured = _seconds(conf, directive)  # a setting read from the file, not a timing
        assert limits.job_timeout_s <= configured <= limits.job_timeout_s + 60, directive
        assert configured > limits.request_timeout_s
