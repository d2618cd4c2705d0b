"""Deployment files (Dockerfile, compose, Kubernetes, Slack manifest) parse and agree with the settings."""

from __future__ import annotations

import json
import re
import shlex
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import pytest
import yaml

from bots.config import load, setting_names
from bots.metrics import Metrics
from core.settings import Settings

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
KUBERNETES = DEPLOY / "kubernetes"
SETTING_NAMES = frozenset(setting_names())
SHUTDOWN_GRACE = Settings.model_fields["shutdown_grace"].default

# Upper-case names with an underscore that appear in deploy/ but are not dify-bots settings.
NOT_SETTINGS = frozenset({"PIP_DISABLE_PIP_VERSION_CHECK"})
ENV_NAME = re.compile(r"(?<![A-Za-z0-9_-])[A-Z][A-Z0-9]*(?:_[A-Z0-9]+)+(?![A-Za-z0-9_-])")


# --- helpers ---------------------------------------------------------------------------------------------------


def dockerfile_instructions() -> list[tuple[str, str]]:
    """(KEYWORD, arguments) per instruction, continuation lines joined and comments dropped."""
    lines = [line for line in (DEPLOY / "Dockerfile").read_text().splitlines() if not line.lstrip().startswith("#")]
    joined = re.sub(r"\\\n", " ", "\n".join(lines))
    instructions = []
    for line in joined.splitlines():
        if line.strip():
            keyword, _, args = line.strip().partition(" ")
            instructions.append((keyword.upper(), args.strip()))
    return instructions


def final_stage() -> list[tuple[str, str]]:
    instructions = dockerfile_instructions()
    last_from = max(i for i, (keyword, _) in enumerate(instructions) if keyword == "FROM")
    return instructions[last_from:]


def docker_env(stage: list[tuple[str, str]]) -> dict[str, str]:
    env = {}
    for keyword, args in stage:
        if keyword == "ENV":
            for item in shlex.split(args):
                name, _, value = item.partition("=")
                env[name] = value
    return env


def load_yaml(path: Path) -> Any:
    return yaml.safe_load(path.read_text())


def k8s_documents() -> list[dict[str, Any]]:
    docs = []
    for path in sorted(KUBERNETES.glob("*.yaml")):
        docs.extend(doc for doc in yaml.safe_load_all(path.read_text()) if doc)
    return docs


def k8s_objects(kind: str, path: Path | None = None) -> list[dict[str, Any]]:
    docs = [doc for doc in yaml.safe_load_all(path.read_text()) if doc] if path else k8s_documents()
    return [doc for doc in docs if doc.get("kind") == kind]


def one(kind: str, path: Path | None = None) -> dict[str, Any]:
    found = k8s_objects(kind, path)
    assert len(found) == 1, f"expected one {kind}, found {len(found)}"
    return found[0]


def compose() -> dict[str, Any]:
    data = load_yaml(DEPLOY / "compose.yaml")
    assert isinstance(data, dict)
    return data


def as_list(value: Any) -> list[str]:
    if value is None:
        return []
    if isinstance(value, str):
        return shlex.split(value)
    return [str(item) for item in value]


def env_mapping(value: Any) -> dict[str, str]:
    """compose `environment:` as a dict, whichever of its two forms is used."""
    if isinstance(value, dict):
        return {str(k): str(v) for k, v in value.items()}
    return dict(str(item).partition("=")[::2] for item in value or [])


def seconds(value: str | int | float) -> float:
    match = re.fullmatch(r"(\d+(?:\.\d+)?)(s|m)?", str(value))
    assert match, f"unexpected duration {value!r}"
    return float(match[1]) * (60 if match[2] == "m" else 1)


def container_port(container: dict[str, Any], port: int | str) -> int:
    if isinstance(port, int):
        return port
    ports = {entry.get("name"): entry["containerPort"] for entry in container.get("ports", [])}
    assert port in ports, f"named port {port!r} is not declared"
    return int(ports[port])


# --- Dockerfile ------------------------------------------------------------------------------------------------


def test_dockerfile_uses_slim_python_311() -> None:
    images = [args.split()[0] for keyword, args in dockerfile_instructions() if keyword == "FROM"]
    assert images
    for image in images:
        assert image.startswith("python:3.11") and "slim" in image, image


def test_dockerfile_runs_as_non_root() -> None:
    users = [args for keyword, args in final_stage() if keyword == "USER"]
    assert users, "the final stage sets no USER"
    user = users[-1].split(":")[0]
    assert user not in ("root", "0", "")


def test_dockerfile_runs_dify_bots_run() -> None:
    stage = final_stage()
    entrypoints = [json.loads(args) for keyword, args in stage if keyword == "ENTRYPOINT"]
    cmds = [json.loads(args) for keyword, args in stage if keyword == "CMD"]
    assert entrypoints[-1] == ["dify-bots"]
    assert cmds[-1] == ["run"]


def test_dockerfile_exposes_8080_with_a_healthcheck() -> None:
    stage = final_stage()
    exposed = {port.split("/")[0] for keyword, args in stage if keyword == "EXPOSE" for port in args.split()}
    assert "8080" in exposed
    healthchecks = [args for keyword, args in stage if keyword == "HEALTHCHECK"]
    assert healthchecks and "NONE" not in healthchecks[-1].upper()
    assert "/healthz" in healthchecks[-1] and "urllib" in healthchecks[-1]
    assert "curl" not in healthchecks[-1]


def test_dockerfile_environment_and_layout() -> None:
    stage = final_stage()
    env = docker_env(stage)
    assert env.get("PYTHONUNBUFFERED") == "1"
    assert env.get("DATA_DIR") == "/app/data"
    assert [args for keyword, args in stage if keyword == "WORKDIR"][-1] == "/app"
    assert any("chown" in args and "/app" in args for keyword, args in stage if keyword == "RUN")


def test_dockerfile_copies_only_existing_paths() -> None:
    copied = []
    for keyword, args in dockerfile_instructions():
        if keyword in ("COPY", "ADD"):
            parts = [part for part in shlex.split(args) if not part.startswith("--")]
            copied.extend(parts[:-1])
    assert {"pyproject.toml", "README.md", "core/", "bots/"} <= set(copied)
    for source in copied:
        assert (ROOT / source).exists(), source
    assert ".env" not in copied and "." not in copied


# --- compose ---------------------------------------------------------------------------------------------------


def test_compose_redis_persists_with_appendonly() -> None:
    data = compose()
    redis = data["services"]["redis"]
    assert str(redis["image"]).startswith("redis:7")
    command = as_list(redis.get("command"))
    assert "--appendonly" in command and command[command.index("--appendonly") + 1] == "yes"
    named = [str(volume).split(":")[0] for volume in redis["volumes"] if str(volume).split(":")[1] == "/data"]
    assert named and named[0] in (data.get("volumes") or {})
    assert "redis-cli" in as_list(redis["healthcheck"]["test"]) and "ping" in as_list(redis["healthcheck"]["test"])


def test_compose_bot_builds_the_image_and_uses_the_redis_service() -> None:
    data = compose()
    bot = data["services"]["bot"]
    context = (DEPLOY / bot["build"]["context"]).resolve()
    assert context == ROOT
    assert (context / bot["build"]["dockerfile"]).resolve() == DEPLOY / "Dockerfile"
    env_files = bot["env_file"] if isinstance(bot["env_file"], list) else [bot["env_file"]]
    assert [(DEPLOY / str(path)).resolve() for path in env_files] == [ROOT / ".env"]
    redis_url = env_mapping(bot["environment"])["REDIS_URL"]
    assert urlparse(redis_url).scheme == "redis" and urlparse(redis_url).hostname == "redis"
    depends = bot["depends_on"]
    assert "redis" in depends
    if isinstance(depends, dict):
        assert depends["redis"]["condition"] == "service_healthy"
    assert "8080:8080" in [str(port) for port in bot["ports"]]
    assert bot["restart"] == "unless-stopped"
    assert seconds(bot["stop_grace_period"]) > SHUTDOWN_GRACE


# --- Kubernetes ------------------------------------------------------------------------------------------------


def test_every_kubernetes_document_has_kind_and_name() -> None:
    docs = k8s_documents()
    assert {doc["kind"] for doc in docs} >= {
        "Deployment",
        "Service",
        "ConfigMap",
        "Secret",
        "StatefulSet",
        "HorizontalPodAutoscaler",
        "PodDisruptionBudget",
    }
    for doc in docs:
        assert doc.get("apiVersion") and doc["metadata"]["name"]


def test_deployment_probes_security_and_settings() -> None:
    deployment = one("Deployment", KUBERNETES / "deployment.yaml")
    assert deployment["spec"]["replicas"] >= 2
    pod = deployment["spec"]["template"]["spec"]
    assert pod["terminationGracePeriodSeconds"] > SHUTDOWN_GRACE
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"].get("runAsUser", 10001) != 0
    (container,) = pod["containers"]
    assert container["image"]
    assert container.get("args", ["run"]) == ["run"]
    liveness = container["livenessProbe"]["httpGet"]
    readiness = container["readinessProbe"]["httpGet"]
    assert liveness["path"] == "/healthz" and readiness["path"] == "/readyz"
    assert container_port(container, liveness["port"]) == 8080
    assert container_port(container, readiness["port"]) == 8080
    assert container["resources"]["requests"] and container["resources"]["limits"]
    assert container["securityContext"]["allowPrivilegeEscalation"] is False
    sources = {(kind, ref["name"]) for entry in container["envFrom"] for kind, ref in entry.items()}
    config = one("ConfigMap", KUBERNETES / "configmap.yaml")
    secret = one("Secret", KUBERNETES / "secret.example.yaml")
    assert sources == {("configMapRef", config["metadata"]["name"]), ("secretRef", secret["metadata"]["name"])}


def test_service_routes_8080_to_the_deployment() -> None:
    service = one("Service", KUBERNETES / "service.yaml")
    deployment = one("Deployment", KUBERNETES / "deployment.yaml")
    assert service["spec"].get("type", "ClusterIP") == "ClusterIP"
    (port,) = service["spec"]["ports"]
    assert port["port"] == 8080
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    assert container_port(container, port.get("targetPort", port["port"])) == 8080
    labels = deployment["spec"]["template"]["metadata"]["labels"]
    assert service["spec"]["selector"].items() <= labels.items()
    assert deployment["spec"]["selector"]["matchLabels"].items() <= labels.items()


def test_configmap_and_secret_hold_valid_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    config = one("ConfigMap", KUBERNETES / "configmap.yaml")["data"]
    secret = one("Secret", KUBERNETES / "secret.example.yaml")
    assert set(secret["stringData"]) == {
        "DIFY_API_KEY",
        "TELEGRAM_BOT_TOKEN",
        "TELEGRAM_WEBHOOK_SECRET",
        "SLACK_BOT_TOKEN",
        "SLACK_SIGNING_SECRET",
        "OPENAI_API_KEYS",
    }
    assert not set(config) & set(secret["stringData"])
    assert all(isinstance(value, str) for value in [*config.values(), *secret["stringData"].values()])
    assert urlparse(config["TELEGRAM_WEBHOOK_URL"]).scheme == "https"
    redis_service = one("Service", KUBERNETES / "redis.yaml")
    assert urlparse(config["REDIS_URL"]).hostname == redis_service["metadata"]["name"]
    for name in SETTING_NAMES:
        monkeypatch.delenv(name, raising=False)
    values = {**config, **secret["stringData"]}
    settings = load(None, **{name.lower(): value for name, value in values.items()}).core
    assert settings.redis_url == config["REDIS_URL"] and settings.http_port == 8080


def test_redis_statefulset_persists_with_appendonly() -> None:
    statefulset = one("StatefulSet", KUBERNETES / "redis.yaml")
    service = one("Service", KUBERNETES / "redis.yaml")
    assert statefulset["spec"]["replicas"] == 1
    pod = statefulset["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    assert str(container["image"]).startswith("redis:")
    command = [*as_list(container.get("command")), *as_list(container.get("args"))]
    assert "--appendonly" in command and command[command.index("--appendonly") + 1] == "yes"
    claims = {claim["metadata"]["name"] for claim in statefulset["spec"]["volumeClaimTemplates"]}
    mounts = {mount["name"]: mount["mountPath"] for mount in container["volumeMounts"]}
    assert any(mounts.get(claim) == "/data" for claim in claims)
    assert service["spec"]["selector"].items() <= statefulset["spec"]["template"]["metadata"]["labels"].items()
    assert [port["port"] for port in service["spec"]["ports"]] == [6379]


def test_hpa_scales_the_deployment_on_cpu_and_answers_in_flight() -> None:
    hpa = one("HorizontalPodAutoscaler", KUBERNETES / "hpa.yaml")
    deployment = one("Deployment", KUBERNETES / "deployment.yaml")
    assert hpa["apiVersion"] == "autoscaling/v2"
    target = hpa["spec"]["scaleTargetRef"]
    assert (target["apiVersion"], target["kind"], target["name"]) == (
        deployment["apiVersion"],
        "Deployment",
        deployment["metadata"]["name"],
    )
    assert 2 <= hpa["spec"]["minReplicas"] <= deployment["spec"]["replicas"] <= hpa["spec"]["maxReplicas"]
    metrics = {metric["type"]: metric for metric in hpa["spec"]["metrics"]}
    assert set(metrics) == {"Resource", "Pods"}
    cpu = metrics["Resource"]["resource"]
    assert cpu["name"] == "cpu" and cpu["target"]["type"] == "Utilization" and 0 < cpu["target"]["averageUtilization"]
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    assert container["resources"]["requests"]["cpu"]  # utilization is a share of the request
    pods = metrics["Pods"]["pods"]
    gauges = {family.name for family in Metrics().registry.collect() if family.type == "gauge"}
    assert pods["metric"]["name"] in gauges  # the service exports it under this name
    assert pods["target"]["type"] == "AverageValue" and float(pods["target"]["averageValue"]) > 0
    assert hpa["spec"]["behavior"]["scaleDown"]["stabilizationWindowSeconds"] >= SHUTDOWN_GRACE


def test_readme_gives_the_adapter_rule_for_the_hpa_metric() -> None:
    name = one("HorizontalPodAutoscaler", KUBERNETES / "hpa.yaml")["spec"]["metrics"]
    (metric,) = [entry["pods"]["metric"]["name"] for entry in name if entry["type"] == "Pods"]
    text = (DEPLOY / "README.md").read_text()
    assert "## Autoscaling" in text
    blocks = [yaml.safe_load(block) for block in re.findall(r"```yaml\n(.*?)```", text, re.DOTALL)]
    rules = [rule for block in blocks if isinstance(block, dict) for rule in block.get("rules", {}).get("custom", [])]
    (rule,) = [rule for rule in rules if rule["name"]["as"] == metric]
    assert rule["seriesQuery"].startswith(metric + "{")
    assert rule["resources"]["overrides"]["pod"] == {"resource": "pod"}
    assert rule["metricsQuery"].startswith("sum(")  # one value per pod, whatever the platform label


def test_pdb_keeps_one_pod_of_the_deployment() -> None:
    pdb = one("PodDisruptionBudget", KUBERNETES / "pdb.yaml")
    deployment = one("Deployment", KUBERNETES / "deployment.yaml")
    assert pdb["apiVersion"] == "policy/v1"
    assert pdb["spec"]["minAvailable"] == 1 and "maxUnavailable" not in pdb["spec"]
    assert (
        pdb["spec"]["selector"]["matchLabels"].items() <= deployment["spec"]["template"]["metadata"]["labels"].items()
    )


def test_termination_grace_covers_prestop_shutdown_grace_and_a_margin() -> None:
    pod = one("Deployment", KUBERNETES / "deployment.yaml")["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    command = container["lifecycle"]["preStop"]["exec"]["command"]
    assert command[0] == "sleep" and len(command) == 2
    pre_stop = seconds(command[1])
    grace = float(one("ConfigMap", KUBERNETES / "configmap.yaml")["data"]["SHUTDOWN_GRACE"])
    # The kubelet counts preStop inside terminationGracePeriodSeconds; the drain starts after it.
    assert pod["terminationGracePeriodSeconds"] >= pre_stop + grace + 5
    assert (
        f"terminationGracePeriodSeconds: {pod['terminationGracePeriodSeconds']}" in (DEPLOY / "README.md").read_text()
    )


# --- Slack app manifest ----------------------------------------------------------------------------------------


def test_slack_manifest() -> None:
    manifest = load_yaml(DEPLOY / "slack-app-manifest.yaml")
    assert manifest["_metadata"]["major_version"] == 1
    assert manifest["display_information"]["name"]
    assert set(manifest["oauth_config"]["scopes"]["bot"]) == {
        "app_mentions:read",
        "chat:write",
        "im:history",
        "commands",
        "files:read",
        "files:write",
        "reactions:write",
    }
    assert len(manifest["oauth_config"]["scopes"]["bot"]) == 7
    features = manifest["features"]
    assert features["bot_user"]["always_online"] is True
    assert features["app_home"]["messages_tab_enabled"] is True
    assert features["app_home"]["messages_tab_read_only_enabled"] is False
    (reset,) = [command for command in features["slash_commands"] if command["command"] == "/reset"]
    assert reset["url"].endswith("/slack/events")
    assert reset["description"] == "Start a new conversation"
    assert reset["should_escape"] is False
    (stop,) = [command for command in features["slash_commands"] if command["command"] == "/stop"]
    assert stop["url"] == reset["url"] and stop["should_escape"] is False
    settings = manifest["settings"]
    events = settings["event_subscriptions"]
    assert events["request_url"].startswith("https://") and events["request_url"].endswith("/slack/events")
    assert set(events["bot_events"]) == {"app_home_opened", "app_mention", "message.im"}
    interactivity = settings["interactivity"]
    assert interactivity["is_enabled"] is True  # Stop, feedback and suggestion buttons
    assert interactivity["request_url"] == events["request_url"]
    assert settings["socket_mode_enabled"] is False


# --- settings named in deploy/ and .env.example ----------------------------------------------------------------


def deploy_files() -> list[Path]:
    return sorted(path for path in DEPLOY.rglob("*") if path.is_file())


def test_every_env_var_named_in_deploy_files_is_a_setting() -> None:
    unknown = {}
    for path in [*deploy_files(), ROOT / ".env.example"]:
        names = set(ENV_NAME.findall(path.read_text())) - NOT_SETTINGS
        if names - SETTING_NAMES:
            unknown[str(path.relative_to(ROOT))] = sorted(names - SETTING_NAMES)
    assert unknown == {}


def test_structured_env_names_are_settings() -> None:
    names = set(docker_env(final_stage())) - {"PYTHONUNBUFFERED", "PYTHONDONTWRITEBYTECODE"} - NOT_SETTINGS
    names |= set(env_mapping(compose()["services"]["bot"].get("environment")))
    names |= set(one("ConfigMap", KUBERNETES / "configmap.yaml")["data"])
    names |= set(one("Secret", KUBERNETES / "secret.example.yaml")["stringData"])
    for doc in k8s_objects("Deployment"):
        for container in doc["spec"]["template"]["spec"]["containers"]:
            names |= {entry["name"] for entry in container.get("env", [])}
    assert names - SETTING_NAMES == set()


def env_example_names() -> list[str]:
    pattern = re.compile(r"^#?\s*([A-Z][A-Z0-9_]*)=", re.MULTILINE)
    return pattern.findall((ROOT / ".env.example").read_text())


def test_env_example_names_only_settings() -> None:
    assert set(env_example_names()) - SETTING_NAMES == set()


def test_env_example_lists_every_setting() -> None:
    names = env_example_names()
    assert SETTING_NAMES - set(names) == set()
    assert len(names) == len(set(names)), "a setting is listed twice"


def test_deploy_readme_covers_the_endpoints() -> None:
    text = (DEPLOY / "README.md").read_text()
    for needle in ("/healthz", "/readyz", "/metrics", "/slack/events", "/v1/", "docker compose -f deploy/compose.yaml"):
        assert needle in text, needle
