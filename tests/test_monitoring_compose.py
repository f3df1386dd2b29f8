"""The compose demo and the Dockerfile, checked by Compose's own parser and by hadolint.

Docker's engine does not run here, so nothing is started; instead every file, port and path
that docker-compose.yml names is checked against the configs that must agree with it.
"""

from __future__ import annotations

import fnmatch
import json
import re
import subprocess
import tomllib
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import yaml

from dashboards import queries
from dashboards.config import DEFAULT
from tests.helpers.processes import require_tool

ROOT = queries.ROOT


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    """The compose model as Compose itself resolves it (paths absolute, ports normalised)."""
    result = subprocess.run(
        [require_tool("docker-compose"), "-f", "docker-compose.yml", "config", "--format", "json"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def load(relative: str) -> Any:
    """A YAML file of the repository."""
    return yaml.safe_load((ROOT / relative).read_text(encoding="utf-8"))


def host_path(service: dict[str, Any], container_path: str) -> Path:
    """The repository file behind a path inside a container, through its bind mounts."""
    for mount in service.get("volumes", []):
        if mount["type"] != "bind":
            continue
        target = mount["target"].rstrip("/")
        if container_path == target or container_path.startswith(target + "/"):
            return Path(mount["source"]) / container_path[len(target) :].lstrip("/")
    pytest.fail(f"{container_path} is not on a bind mount")


def flag(service: dict[str, Any], name: str) -> str:
    """The value of `--name=value` in a service's command."""
    for arg in service.get("command") or []:
        if arg.startswith(f"--{name}="):
            return arg.split("=", 1)[1]
    pytest.fail(f"no --{name} in the command")


def container_ports(service: dict[str, Any]) -> set[int]:
    """Ports the service publishes, as seen inside its container."""
    return {int(port["target"]) for port in service.get("ports", [])}


def split_target(target: str) -> tuple[str, int]:
    """`host:port` as a pair."""
    host, _, port = target.rpartition(":")
    return host, int(port)


@pytest.mark.slow
def test_services(compose: dict[str, Any]) -> None:
    """Exporter, Prometheus, Alertmanager and Grafana; ports published on localhost only."""
    assert set(compose["services"]) == {"exporter", "prometheus", "alertmanager", "grafana"}
    for name, service in compose["services"].items():
        for port in service.get("ports", []):
            assert port["host_ip"] == "127.0.0.1", f"{name} publishes beyond localhost"


@pytest.mark.slow
def test_images_are_pinned(compose: dict[str, Any]) -> None:
    """Every pulled image names an exact version; the exporter is built from this repo."""
    for name, service in compose["services"].items():
        if "build" in service:
            assert Path(service["build"]["context"]) == ROOT
            assert (ROOT / service["build"]["dockerfile"]).is_file()
            continue
        image, _, tag = service["image"].rpartition(":")
        assert image and re.fullmatch(r"v?\d+\.\d+\.\d+", tag), f"{name}: {service['image']}"


@pytest.mark.slow
def test_bind_mounts_exist(compose: dict[str, Any]) -> None:
    """Every file or folder mounted from the repository exists."""
    for name, service in compose["services"].items():
        for mount in service.get("volumes", []):
            if mount["type"] == "bind":
                source = Path(mount["source"])
                assert source.exists(), f"{name} mounts missing {source}"
                assert source.is_relative_to(ROOT), f"{name} mounts from outside the repo"


@pytest.mark.slow
def test_config_files_named_in_commands_exist(compose: dict[str, Any]) -> None:
    """Prometheus and Alertmanager read the repository's configs through their mounts."""
    services = compose["services"]
    prometheus = host_path(services["prometheus"], flag(services["prometheus"], "config.file"))
    assert prometheus == ROOT / "prometheus" / "prometheus.yml"
    alertmanager = host_path(
        services["alertmanager"], flag(services["alertmanager"], "config.file")
    )
    assert alertmanager == ROOT / "prometheus" / "alertmanager.yml"


@pytest.mark.slow
def test_prometheus_rule_files_are_mounted(compose: dict[str, Any]) -> None:
    """The rule_files globs, relative to the config inside the container, find every rule."""
    service = compose["services"]["prometheus"]
    config_path = flag(service, "config.file")
    config_dir = config_path.rsplit("/", 1)[0]
    found = set()
    for pattern in load("prometheus/prometheus.yml")["rule_files"]:
        folder = host_path(service, f"{config_dir}/{pattern}").parent
        found |= {p.name for p in folder.iterdir() if fnmatch.fnmatch(p.name, Path(pattern).name)}
    assert found == set(queries.rule_files())


@pytest.mark.slow
def test_prometheus_targets_are_compose_services(compose: dict[str, Any]) -> None:
    """Scrape and alerting targets name services on the ports they listen on."""
    services = compose["services"]
    config = load("prometheus/prometheus.yml")
    jobs = {job["job_name"]: job for job in config["scrape_configs"]}
    assert DEFAULT.exporter_job in jobs, "rules and dashboards select a job that is not scraped"
    (exporter_target,) = jobs[DEFAULT.exporter_job]["static_configs"][0]["targets"]
    host, port = split_target(exporter_target)
    assert host == "exporter"
    exporter = services["exporter"]
    command = exporter["command"]
    listen = command[command.index("--listen") + 1]
    assert split_target(listen)[1] == port
    assert port in container_ports(exporter)
    assert f"EXPOSE {port}" in (ROOT / "Dockerfile").read_text(encoding="utf-8")
    (alertmanager_target,) = config["alerting"]["alertmanagers"][0]["static_configs"][0]["targets"]
    host, port = split_target(alertmanager_target)
    assert host == "alertmanager" and port in container_ports(services["alertmanager"])


@pytest.mark.slow
def test_grafana_datasource_points_at_prometheus(compose: dict[str, Any]) -> None:
    """The provisioned datasource is the compose Prometheus, under the uid dashboards use."""
    (datasource,) = load("grafana/provisioning/datasources/prometheus.yml")["datasources"]
    url = urlsplit(datasource["url"])
    assert url.hostname == "prometheus"
    assert url.port in container_ports(compose["services"]["prometheus"])
    assert datasource["uid"] == DEFAULT.datasource_uid
    assert datasource["type"] == "prometheus" and datasource["isDefault"]


@pytest.mark.slow
def test_grafana_loads_the_generated_dashboards(compose: dict[str, Any]) -> None:
    """Provisioning and the home dashboard point, through the mounts, at grafana/."""
    grafana = compose["services"]["grafana"]
    assert host_path(grafana, "/etc/grafana/provisioning") == ROOT / "grafana" / "provisioning"
    (provider,) = load("grafana/provisioning/dashboards/job-exporter.yml")["providers"]
    assert host_path(grafana, provider["options"]["path"]) == queries.DASHBOARDS_DIR
    home = grafana["environment"]["GF_DASHBOARDS_DEFAULT_HOME_DASHBOARD_PATH"]
    assert host_path(grafana, home) == queries.DASHBOARDS_DIR / "summary.json"


@pytest.mark.slow
def test_exporter_runs_the_demo(compose: dict[str, Any]) -> None:
    """The compose exporter runs `demo`, the mode that needs no app or database."""
    assert compose["services"]["exporter"]["command"][0] == "demo"


@pytest.mark.slow
def test_hadolint() -> None:
    """The Dockerfile passes hadolint at its strictest threshold."""
    result = subprocess.run(
        [require_tool("hadolint"), "--failure-threshold", "info", "Dockerfile"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def _copied() -> list[str]:
    """Sources of the Dockerfile's COPY instructions."""
    sources = []
    for line in (ROOT / "Dockerfile").read_text(encoding="utf-8").splitlines():
        if line.startswith("COPY "):
            sources.extend(line.split()[1:-1])
    return sources


def test_image_gets_what_pip_needs_and_dockerignore_keeps_it() -> None:
    """The package, its metadata and its readme are copied, and .dockerignore lets them in."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    copied = _copied()
    assert {"pyproject.toml", project["readme"], "exporter"} <= set(copied)
    kept = [
        line[1:].rstrip("/")
        for line in (ROOT / ".dockerignore").read_text(encoding="utf-8").splitlines()
        if line.startswith("!")
    ]
    for source in copied:
        assert source.rstrip("/") in kept, f".dockerignore drops {source}"


def test_image_entrypoint_is_the_console_script() -> None:
    """The image runs the console script the package declares."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    dockerfile = (ROOT / "Dockerfile").read_text(encoding="utf-8")
    (script,) = project["scripts"]
    assert f'ENTRYPOINT ["{script}"]' in dockerfile
