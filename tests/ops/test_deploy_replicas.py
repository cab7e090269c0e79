"""deploy/docker-compose.yml and deploy/kubernetes/: validated against real schemas, then checked for
what running replicas needs. Neither Docker nor a Kubernetes cluster is needed:

- Kubernetes manifests: `kubernetes-validate` (PyPI), strict mode, against the JSON schemas of the
  Kubernetes version it ships (unknown fields are errors).
- Compose file: the Compose Specification's JSON schema (tests/schemas/compose-spec.schema.json), with
  `jsonschema`; `docker compose config` is used too where a Docker client with Compose exists.
- The health-check commands are run against a real health server.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import jsonschema
import kubernetes_validate
import pytest
import yaml

from nonstop.config.settings import SupervisorSettings
from nonstop.status import Telemetry
from nonstop.status.health import start_health_server
from nonstop.status.state import State
from sandbox.testing import clean_env
from tests.redisserver import free_port

REPO = Path(__file__).resolve().parents[2]
COMPOSE = REPO / "deploy" / "docker-compose.yml"
KUBE = REPO / "deploy" / "kubernetes"
COMPOSE_SCHEMA = REPO / "tests" / "schemas" / "compose-spec.schema.json"
KUBE_VERSION = "1.33"


def kube_resources() -> dict[tuple[str, str], dict[str, Any]]:
    resources = {}
    for path in sorted(KUBE.glob("*.yaml")):
        for doc in yaml.safe_load_all(path.read_text()):
            if doc:
                resources[(doc["kind"], doc["metadata"]["name"])] = doc
    return resources


@pytest.mark.parametrize("path", sorted(KUBE.glob("*.yaml")), ids=lambda p: p.name)
def test_kubernetes_manifests_are_valid_in_strict_mode(path: Path) -> None:
    for doc in yaml.safe_load_all(path.read_text()):
        try:
            kubernetes_validate.validate(doc, KUBE_VERSION, strict=True)
        except kubernetes_validate.ValidationError as e:
            pytest.fail(f"{path.name}: {doc['kind']} {doc['metadata']['name']}: {e.message}")


def env_of(container: dict[str, Any]) -> dict[str, Any]:
    return {e["name"]: e.get("value", e.get("valueFrom")) for e in container["env"]}


def test_the_deployment_runs_two_replicas_that_drain_and_hand_over_before_the_kill() -> None:
    resources = kube_resources()
    deployment = resources[("Deployment", "nonstop")]
    spec = deployment["spec"]
    assert spec["replicas"] == 2
    assert spec["strategy"]["rollingUpdate"]["maxUnavailable"] == 0, "a new replica is ready before an old one stops"
    pod = spec["template"]["spec"]
    (container,) = pod["containers"]
    env = env_of(container)
    drain = float(env.get("NONSTOP_DRAIN_TIMEOUT", SupervisorSettings.drain_timeout_s))
    assert pod["terminationGracePeriodSeconds"] > drain + 5
    assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert env["HEALTH_HOST"] == "0.0.0.0"
    for secret in ("SLACK_BOT_TOKEN", "SLACK_APP_TOKEN", "NONSTOP_LEDGER"):
        assert env[secret]["secretKeyRef"]["name"] == "nonstop-tokens", f"{secret} comes from the Secret"
    assert env["NONSTOP_REPLICA_NAME"]["fieldRef"]["fieldPath"] == "metadata.name"
    pdb = resources[("PodDisruptionBudget", "nonstop")]
    assert pdb["spec"]["selector"]["matchLabels"] == spec["selector"]["matchLabels"]
    assert pdb["spec"]["minAvailable"] == 1
    secret = resources[("Secret", "nonstop-tokens")]
    assert set(secret["stringData"]) == {"SLACK_BOT_TOKEN", "SLACK_APP_TOKEN", "NONSTOP_LEDGER"}
    redis_service = resources[("Service", "nonstop-redis")]
    assert secret["stringData"]["NONSTOP_LEDGER"].startswith(f"redis://{redis_service['metadata']['name']}:6379/")


def test_the_example_secret_cannot_reach_slack_unedited() -> None:
    from nonstop.config.settings import PLACEHOLDER_TOKENS

    secret = kube_resources()[("Secret", "nonstop-tokens")]["stringData"]
    assert {k: secret[k] for k in PLACEHOLDER_TOKENS} == PLACEHOLDER_TOKENS, "the bot refuses these with one line"


def compose() -> dict[str, Any]:
    return yaml.safe_load(COMPOSE.read_text())


def test_the_compose_file_is_valid_against_the_compose_specification() -> None:
    schema = yaml.safe_load(COMPOSE_SCHEMA.read_text())
    errors = sorted(jsonschema.Draft201909Validator(schema).iter_errors(compose()), key=str)
    assert not errors, "\n".join(f"{list(e.absolute_path)}: {e.message}" for e in errors)


def test_the_compose_file_passes_docker_compose_config_where_docker_has_compose() -> None:
    docker = shutil.which("docker")
    has_compose = docker and subprocess.run([docker, "compose", "version"], capture_output=True, check=False)
    if not has_compose or has_compose.returncode != 0:
        pytest.skip("no Docker client with Compose here: the schema check above stands in for it")
    env = clean_env()
    result = subprocess.run(
        [docker, "compose", "-f", str(COMPOSE), "config", "-q"], capture_output=True, text=True, env=env, check=False
    )
    assert result.returncode == 0, result.stderr


def test_the_compose_file_runs_two_replicas_on_redis_with_health_checks() -> None:
    services = compose()["services"]
    bot, redis = services["nonstop"], services["redis"]
    assert bot["deploy"]["replicas"] == 2
    assert bot["environment"]["NONSTOP_LEDGER"] == "redis://redis:6379/0"
    assert bot["depends_on"]["redis"]["condition"] == "service_healthy"
    assert "healthcheck" in redis
    drain = float(bot["environment"]["NONSTOP_DRAIN_TIMEOUT"])
    assert float(bot["stop_grace_period"].rstrip("s")) > drain + 5
    assert (COMPOSE.parent / bot["build"]["context"] / "Dockerfile").exists()
    assert "ports" not in bot, "two replicas cannot publish one host port"


def test_the_compose_health_check_passes_when_ready_and_fails_when_not() -> None:
    test = compose()["services"]["nonstop"]["healthcheck"]["test"]
    assert test[:2] == ["CMD", "python"]
    telemetry = Telemetry()
    port = free_port()
    server = start_health_server("127.0.0.1", port, telemetry)
    assert server is not None
    command = [sys.executable, *[arg.replace("8080", str(port)) for arg in test[2:]]]
    try:
        assert subprocess.run(command, capture_output=True, timeout=30, check=False).returncode != 0, "not ready yet"
        telemetry.beat()
        telemetry.connection_up()
        telemetry.inbound()
        telemetry.set_state(State.CONNECTED)
        ok = subprocess.run(command, capture_output=True, timeout=30, check=False)
        assert ok.returncode == 0, ok.stderr
    finally:
        server.close()
