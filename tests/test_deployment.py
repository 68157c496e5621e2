"""The production shape, checked offline: docker-compose.yaml, the Dockerfile and what they run.

There is no Docker engine here. Debian's ``docker-compose`` (1.29, installed by ``make install``)
validates the file with ``config -q`` without one; the rest parses the file and checks every
service, volume and variable it uses, that nothing secret is written in it, that every Airflow
setting it makes is a real option of the pinned Airflow, and that the components run the very
commands ``tests/test_celery.py`` runs for real.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
COMPOSE = ROOT / "docker-compose.yaml"
DOCKERFILE = ROOT / "Dockerfile"
DOCS = ROOT / "docs" / "deployment.md"

# The variables a deployment must provide (docker compose stops with a message without them).
REQUIRED = {
    "AIRFLOW_FERNET_KEY", "POSTGRES_PASSWORD", "REDIS_PASSWORD", "AIRFLOW_JWT_SECRET", "AIRFLOW_API_SECRET_KEY",
}
AIRFLOW_SERVICES = {
    "airflow-apiserver", "airflow-scheduler", "airflow-dag-processor", "airflow-worker", "airflow-triggerer",
}
SERVICES = AIRFLOW_SERVICES | {"postgres", "redis", "airflow-init", "airflow-cli", "m365", "azurite"}
DEV_ONLY = {"m365", "azurite"}
_VAR = re.compile(r"(?<!\$)\$\{([A-Za-z_][A-Za-z0-9_]*)(?:(:?[-?])([^}]*))?\}")


def _compose() -> dict:
    return yaml.safe_load(COMPOSE.read_text(encoding="utf-8"))


def _required_env() -> dict[str, str]:
    return {name: f"example-{name.lower()}" for name in REQUIRED}


def _variables() -> dict[str, tuple[str, str]]:
    """Every ``${NAME...}`` in the file: name -> (operator, default or message)."""
    found: dict[str, tuple[str, str]] = {}
    lines = [ln for ln in COMPOSE.read_text(encoding="utf-8").splitlines() if not ln.lstrip().startswith("#")]
    for name, op, rest in _VAR.findall("\n".join(lines)):
        found.setdefault(name, (op, rest))
    return found


def _docker_compose() -> str:
    exe = shutil.which("docker-compose")
    if exe is None:
        pytest.skip("Debian's docker-compose is not installed (make install adds it; the parse checks still run)")
    return exe


def test_compose_config_is_valid_for_docker_compose(tmp_path):
    exe = _docker_compose()
    env = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path), **_required_env()}
    for profile in ([], ["--profile", "dev"]):
        r = subprocess.run([exe, "-f", str(COMPOSE), *profile, "config", "-q"], env=env, capture_output=True, text=True)
        assert r.returncode == 0, r.stderr
    r = subprocess.run(
        [exe, "-f", str(COMPOSE), "--profile", "dev", "config", "--services"], env=env, capture_output=True, text=True
    )
    assert set(r.stdout.split()) == SERVICES, r.stderr


def test_compose_refuses_to_start_without_each_secret(tmp_path):
    exe = _docker_compose()
    for missing in sorted(REQUIRED):
        env = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path), **_required_env()}
        del env[missing]
        r = subprocess.run([exe, "-f", str(COMPOSE), "config", "-q"], env=env, capture_output=True, text=True)
        assert r.returncode != 0 and missing in r.stderr, (missing, r.stderr)


def test_every_service_volume_and_dependency_is_defined():
    compose = _compose()
    services = compose["services"]
    assert set(services) == SERVICES
    declared = set(compose["volumes"])
    used: set[str] = set()
    for name, svc in services.items():
        for v in svc.get("volumes", []):
            source = v.split(":", 1)[0]
            assert not source.startswith((".", "/")), f"{name}: bind mount {v}; state lives in named volumes"
            used.add(source)
        for dep in svc.get("depends_on", {}):
            assert dep in services, f"{name} depends on undefined {dep}"
            assert not (set(services[dep].get("profiles", [])) and not svc.get("profiles")), (
                f"{name} (always on) depends on {dep}, which only runs in a profile"
            )
        if name != "airflow-init" and name != "airflow-cli":
            assert "healthcheck" in svc, f"{name} has no health check"
            assert svc.get("restart") in ("always", "unless-stopped"), f"{name} is not restarted"
        assert set(svc.get("profiles", [])) == ({"dev"} if name in DEV_ONLY else {"debug"} if name == "airflow-cli" else set())
    assert used == declared, f"volumes declared but unused or used but undeclared: {used ^ declared}"
    for name in AIRFLOW_SERVICES:
        svc = services[name]
        assert svc["build"] == {"context": ".", "dockerfile": "Dockerfile"}
        assert svc["depends_on"]["airflow-init"] == {"condition": "service_completed_successfully"}
        assert svc["depends_on"]["postgres"] == {"condition": "service_healthy"}
        assert svc["depends_on"]["redis"] == {"condition": "service_healthy"}
    assert services["airflow-worker"]["depends_on"]["airflow-apiserver"] == {"condition": "service_healthy"}
    assert "container_name" not in services["airflow-worker"], "a container_name would stop --scale"


def test_the_init_service_migrates_both_schemas_with_real_commands():
    from lgdp.cli import build_parser

    script = _compose()["services"]["airflow-init"]["command"][-1]
    lines = [ln.strip() for ln in script.splitlines()]
    assert lines.index("airflow db migrate") < lines.index("lgdp db upgrade") < lines.index("lgdp ledger sync")
    parser = build_parser()
    for cmd in ("db upgrade", "ledger sync"):
        parser.parse_args(cmd.split())  # exits (SystemExit) if the CLI lost the command


def test_no_secret_or_connection_is_written_in_the_file():
    compose = _compose()
    secretish = re.compile(r"(PASSWORD|SECRET|FERNET|_KEY$|^AIRFLOW_CONN_|TOKEN)", re.I)
    for name, svc in compose["services"].items():
        env = svc.get("environment") or {}
        assert isinstance(env, dict), f"{name}: environment as a mapping"
        for key, value in env.items():
            if secretish.search(key):
                assert _VAR.fullmatch(str(value)), f"{name}: {key} is written in the file, not taken from the environment"
            for m in _VAR.finditer(str(value)):
                if secretish.search(m.group(1)):
                    assert m.group(2) != ":-" or m.group(3) == "", f"{name}: {key} has a default secret"
    text = COMPOSE.read_text(encoding="utf-8")
    assert "fake-secret" not in text and "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq" not in text
    for name, (op, rest) in _variables().items():
        if name in REQUIRED:
            assert op == ":?" and rest, f"{name} must stop compose with a message when unset"


def test_every_airflow_setting_is_an_option_of_the_pinned_airflow():
    from airflow.configuration import conf

    described = conf.configuration_description  # core's options and every installed provider's
    env = _compose()["x-airflow-common"]["environment"]
    for key in env:
        if key.startswith("AIRFLOW__"):
            _, section, option = key.split("__", 2)
            options = described.get(section.lower(), {}).get("options", {})
            assert option.lower() in options, f"{key}: no such Airflow option"
    assert env["AIRFLOW__CORE__EXECUTOR"] == "CeleryExecutor"
    assert env["AIRFLOW__CORE__EXECUTION_API_SERVER_URL"] == "http://airflow-apiserver:8080/execution/"


def test_every_variable_is_documented():
    documented = DOCS.read_text(encoding="utf-8")
    for name in _variables():
        assert f"`{name}`" in documented, f"{name} is used in docker-compose.yaml but not described in docs/deployment.md"


def test_components_run_the_commands_the_celery_test_runs():
    """The compose services' commands are the ones tests/test_celery.py starts as processes."""
    from test_celery import COMPONENTS

    services = _compose()["services"]
    for service, argv in COMPONENTS.items():
        command = services[service]["command"]
        command = command.split() if isinstance(command, str) else command
        assert ["airflow", *command] == argv[: len(command) + 1], (service, command, argv)
    assert set(COMPONENTS) == AIRFLOW_SERVICES


def test_dockerfile_builds_on_the_official_image_of_the_pinned_release():
    text = DOCKERFILE.read_text(encoding="utf-8")
    pinned = re.search(r"^apache-airflow==(\S+)$", (ROOT / "requirements.txt").read_text(), re.M).group(1)
    assert re.search(rf"^ARG AIRFLOW_VERSION={re.escape(pinned)}$", text, re.M)
    assert re.search(r"^FROM apache/airflow:\$\{AIRFLOW_VERSION\}-python3\.11$", text, re.M)
    assert "-r /opt/lgdp/requirements.txt -c /opt/lgdp/constraints.txt" in text
    assert "pip install --no-cache-dir --no-deps /opt/lgdp" in text
    for folder in ("include", "dags", "plugins", "return_specs"):
        assert re.search(rf"^COPY .*\b{folder} ", text, re.M), f"the image lacks {folder}/"
    # the build context lets in what the Dockerfile copies, and only that
    ignore = (ROOT / ".dockerignore").read_text().splitlines()
    assert ignore[1] == "*" or "*" in ignore
    for needed in ("requirements.txt", "constraints.txt", "pyproject.toml", "README.md", "include/", "dags/", "plugins/", "return_specs/"):
        assert f"!{needed}" in ignore
    # the celery provider the image's workers need is pinned where the image installs from
    req = (ROOT / "requirements.txt").read_text()
    assert re.search(r"^apache-airflow-providers-celery==", req, re.M) and re.search(r"^redis==", req, re.M)


def test_the_dev_profile_stand_in_serves_graph_over_https_to_other_hosts(tmp_path, monkeypatch):
    """What the compose file's m365 service runs: Graph over HTTPS under a public name, which the
    Graph client accepts off loopback (plain HTTP it would refuse); list, upload and download work."""
    import json

    from airflow.providers.microsoft.azure.hooks.msgraph import KiotaRequestAdapterHook

    from lgdp.collect.graph import SharePointDrive
    from lgdp.devservices.m365 import M365StandIn

    command = _compose()["services"]["m365"]["command"][-1]
    assert "python -m lgdp.devservices.m365" in command and "--tls" in command and "--public-host m365" in command
    KiotaRequestAdapterHook.cached_request_adapters.pop("msgraph_sharepoint", None)
    with M365StandIn(tmp_path / "m365", public_host="localhost", graph_tls=True) as standin:
        assert standin.graph_url.startswith("https://localhost:")
        monkeypatch.setenv("AIRFLOW_CONN_MSGRAPH_SHAREPOINT", json.dumps(standin.connection(verify=False)))
        standin.put_file("clas/2025-26/S12000036/return.csv", b"a,b\n1,2\n")
        drive = SharePointDrive()
        [item] = drive.list_folder_sync("clas/2025-26/S12000036")
        assert drive.download_sync(item.id) == b"a,b\n1,2\n"
        assert drive.upload_sync("clas/2025-26/S12000036/_platform/feedback.xlsx", b"workbook").name == "feedback.xlsx"
        assert all(r["path"].startswith(("/v1.0/", "/_download/")) for r in standin.requests("graph"))
    KiotaRequestAdapterHook.cached_request_adapters.pop("msgraph_sharepoint", None)


def test_the_triggerer_may_open_a_file_per_trigger_up_to_its_capacity():
    """The triggerer keeps one log file open per running trigger (bench/triggerer_process.py
    measured 5,451 open files for 5,440 triggers), so its open-files limit is above its capacity."""
    compose = yaml.safe_load(COMPOSE.read_text())
    triggerer = compose["services"]["airflow-triggerer"]
    nofile = triggerer["ulimits"]["nofile"]
    capacity = int(re.search(r":-(\d+)\}", compose["x-airflow-common"]["environment"]["AIRFLOW__TRIGGERER__CAPACITY"]).group(1))
    assert min(nofile["soft"], nofile["hard"]) >= capacity + 2048

