"""deploy/kubernetes/: the base and the PostgreSQL overlay, rendered by `kubectl kustomize`.

No cluster runs here, so what a cluster and the prometheus-operator would check is checked on
the rendered objects: the ServiceMonitor and the PrometheusRule against the operator's own CRD
schemas (tests/data/prometheus-operator/, strict about unknown fields), the rules by promtool,
every selector against the labels it must match, every named port against the ports that
exist, and the probes, environment and arguments of the Deployment by running them: the
exporter started the way the pod starts it answers its probes.

The PrometheusRule and the dashboard ConfigMaps are generated (dashboards/kubernetes.py) from
the same files the compose demo loads, and must hold exactly those.
"""

from __future__ import annotations

import copy
import json
import re
import subprocess
import tomllib
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import requests
import yaml

from dashboards import kubernetes, queries
from dashboards import main as generator
from exporter import cli
from tests.helpers.processes import ExporterProcess, free_port, require_tool
from tests.helpers.served import sqlite_url

ROOT = queries.ROOT
DEPLOY = ROOT / "deploy" / "kubernetes"
BASE = DEPLOY / "base"
OVERLAY = DEPLOY / "overlays" / "postgresql"
SCHEMAS = Path(__file__).parent / "data" / "prometheus-operator"
PROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
NAME_LABEL = "app.kubernetes.io/name"
# kubectl apply (client side) keeps the whole object in an annotation of at most this size.
LAST_APPLIED_LIMIT = 256 * 1024
DNS_1123 = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")

Objects = list[dict[str, Any]]


def render(folder: Path) -> Objects:
    """`kubectl kustomize FOLDER`, as objects (an empty document, left by a deleted object in
    older kustomize, is skipped)."""
    result = subprocess.run(
        [require_tool("kubectl"), "kustomize", str(folder)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    return [doc for doc in yaml.safe_load_all(result.stdout) if doc]


@pytest.fixture(scope="module")
def base() -> Objects:
    return render(BASE)


@pytest.fixture(scope="module")
def overlay() -> Objects:
    return render(OVERLAY)


@pytest.fixture(params=["base", "overlay"])
def rendered(request: pytest.FixtureRequest) -> Objects:
    return request.getfixturevalue(request.param)


def only(objects: Objects, kind: str) -> dict[str, Any]:
    (found,) = [o for o in objects if o["kind"] == kind]
    return found


def of_kind(objects: Objects, kind: str) -> Objects:
    return [o for o in objects if o["kind"] == kind]


def container(objects: Objects) -> dict[str, Any]:
    (found,) = only(objects, "Deployment")["spec"]["template"]["spec"]["containers"]
    return found


def env_of(objects: Objects) -> dict[str, dict[str, Any]]:
    return {item["name"]: item for item in container(objects).get("env", [])}


def matches(selector: dict[str, Any], labels: dict[str, str]) -> bool:
    """A label selector (matchLabels, matchExpressions In/NotIn/Exists) against labels."""
    assert set(selector) <= {"matchLabels", "matchExpressions"}, selector
    if not selector:
        return False  # an empty selector is valid Kubernetes but selects too much here
    for key, value in selector.get("matchLabels", {}).items():
        if labels.get(key) != value:
            return False
    for expression in selector.get("matchExpressions", []):
        key, operator = expression["key"], expression["operator"]
        values = expression.get("values", [])
        if operator == "In" and labels.get(key) not in values:
            return False
        if operator == "NotIn" and labels.get(key) in values:
            return False
        if operator == "Exists" and key not in labels:
            return False
        if operator == "DoesNotExist" and key in labels:
            return False
    return True


# The generated manifests: current, and exactly the compose demo's rules and dashboards.


def test_generated_manifests_are_current() -> None:
    """The PrometheusRule and the ConfigMaps are what `python -m dashboards` writes now."""
    for relative, text in kubernetes.manifests(generator.generated()).items():
        path = ROOT / relative
        assert path.exists(), f"{relative} is missing: run python -m dashboards"
        assert path.read_text(encoding="utf-8") == text, f"{relative} is stale"
        assert relative.parent == BASE.relative_to(ROOT)
        assert (
            relative.name in yaml.safe_load((BASE / "kustomization.yaml").read_text())["resources"]
        ), f"the base does not list {relative.name}"


@pytest.mark.slow
def test_the_prometheus_rule_holds_exactly_the_rule_files(base: Objects) -> None:
    """The same groups as prometheus/rules/*.rules.yml, each with the same rules in the same
    order: the same expressions, durations, labels and annotations."""
    groups = [group for doc in queries.rule_files().values() for group in doc["groups"]]
    held = only(base, "PrometheusRule")["spec"]["groups"]
    names = [group["name"] for group in held]
    assert len(names) == len(set(names)), "group names must be unique in one PrometheusRule"
    assert {g["name"]: g for g in held} == {g["name"]: g for g in groups}
    assert len(held) == len(groups)
    assert sum(len(group["rules"]) for group in held) == len(queries.rules())


@pytest.mark.slow
def test_promtool_checks_the_rules_of_the_rendered_prometheus_rule(
    base: Objects, tmp_path: Path
) -> None:
    """The operator hands Prometheus `spec.groups` as a rule file: promtool accepts it."""
    path = tmp_path / "prometheusrule.rules.yml"
    path.write_text(yaml.safe_dump({"groups": only(base, "PrometheusRule")["spec"]["groups"]}))
    result = subprocess.run(
        [require_tool("promtool"), "check", "rules", str(path)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"SUCCESS: {len(queries.rules())} rules found" in result.stdout


@pytest.mark.slow
def test_the_dashboards_are_config_maps_for_the_grafana_sidecar(base: Objects) -> None:
    """One ConfigMap per dashboard, labelled `grafana_dashboard: "1"`, holding exactly the
    generated JSON under a key no other dashboard uses; each small enough for kubectl apply."""
    boards = queries.dashboards()
    maps = [
        o for o in of_kind(base, "ConfigMap") if o["metadata"]["labels"].get("grafana_dashboard")
    ]
    assert len(maps) == len(boards)
    found: dict[str, Any] = {}
    for config_map in maps:
        assert config_map["metadata"]["labels"]["grafana_dashboard"] == "1"
        ((key, text),) = config_map["data"].items()
        assert key.endswith(".json") and key.startswith("job-exporter-")
        found[key.removeprefix("job-exporter-")] = json.loads(text)
        assert len(json.dumps(config_map)) < LAST_APPLIED_LIMIT, key
    assert found == boards


def _datasource_refs(node: Any, inside_current: bool = False) -> Iterator[str]:
    """The uid (or name) of every data source a dashboard's panels, targets, annotations
    and variable queries use; a variable's saved `current` choice is not one."""
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "datasource" and not inside_current:
                if isinstance(value, dict) and "uid" in value:
                    yield str(value["uid"])
                elif isinstance(value, str):
                    yield value
            if key != "__inputs":
                yield from _datasource_refs(value, inside_current or key == "current")
    elif isinstance(node, list):
        for item in node:
            yield from _datasource_refs(item, inside_current)


def test_dashboards_need_no_import_inputs() -> None:
    """The sidecar provisions files, and provisioning substitutes no `__inputs`: every data
    source a dashboard uses is one of its own variables (or a fixed uid), never `${DS_...}`."""
    for name, board in queries.dashboards().items():
        variables = {v["name"] for v in board.get("templating", {}).get("list", [])}
        for ref in _datasource_refs(board):
            used = re.fullmatch(r"\$\{([A-Za-z0-9_]+)\}|\$([A-Za-z0-9_]+)", ref)
            if used:
                assert (used.group(1) or used.group(2)) in variables, f"{name}: {ref}"


# The operator's objects, against its CRDs.


def strict(schema: Any) -> Any:
    """The schema with unknown fields refused where Kubernetes would prune them, so a
    misspelt field fails here instead of vanishing silently in the cluster."""
    if isinstance(schema, dict):
        schema = {key: strict(value) for key, value in schema.items()}
        if (
            schema.get("type") == "object"
            and "properties" in schema
            and "additionalProperties" not in schema
            and not schema.get("x-kubernetes-preserve-unknown-fields")
        ):
            schema["additionalProperties"] = False
        return schema
    if isinstance(schema, list):
        return [strict(item) for item in schema]
    return schema


def crd_schema(name: str) -> dict[str, Any]:
    return json.loads((SCHEMAS / f"{name}.schema.json").read_text(encoding="utf-8"))


@pytest.mark.slow
@pytest.mark.parametrize(
    ("kind", "schema_name"),
    [("ServiceMonitor", "servicemonitor"), ("PrometheusRule", "prometheusrule")],
)
def test_operator_objects_validate_against_the_crd(
    rendered: Objects, kind: str, schema_name: str
) -> None:
    crd = crd_schema(schema_name)
    obj = only(rendered, kind)
    assert obj["apiVersion"] == f"{crd['group']}/{crd['version']}"
    assert obj["kind"] == crd["kind"]
    validator = jsonschema.Draft4Validator(strict(crd["openAPIV3Schema"]))
    errors = [f"{list(e.absolute_path)}: {e.message}" for e in validator.iter_errors(obj)]
    assert errors == []


def test_the_strict_schema_refuses_a_misspelt_field() -> None:
    """The check above would catch `endpoint:` for `endpoints:` (Kubernetes would drop it)."""
    validator = jsonschema.Draft4Validator(strict(crd_schema("servicemonitor")["openAPIV3Schema"]))
    monitor = {
        "apiVersion": "monitoring.coreos.com/v1",
        "kind": "ServiceMonitor",
        "metadata": {"name": "x"},
        "spec": {"selector": {}, "endpoint": [{"port": "http"}]},
    }
    assert not validator.is_valid(monitor)
    fixed = copy.deepcopy(monitor)
    fixed["spec"]["endpoints"] = fixed["spec"].pop("endpoint")
    assert validator.is_valid(fixed)


# Every object, and how they find each other.


@pytest.mark.slow
def test_every_object_is_named_and_labelled(rendered: Objects) -> None:
    seen = set()
    for obj in rendered:
        assert {"apiVersion", "kind", "metadata"} <= set(obj)
        name = obj["metadata"]["name"]
        assert DNS_1123.match(name) and len(name) <= 63, name
        assert (obj["kind"], name) not in seen
        seen.add((obj["kind"], name))
        assert obj["metadata"]["labels"][NAME_LABEL] == "job-exporter", name
        assert "namespace" not in obj["metadata"], "the base leaves the namespace to its user"


@pytest.mark.slow
def test_the_service_monitor_scrapes_the_services_named_port(rendered: Objects) -> None:
    service, monitor = only(rendered, "Service"), only(rendered, "ServiceMonitor")
    assert matches(monitor["spec"]["selector"], service["metadata"]["labels"])
    ports = {port["name"]: port for port in service["spec"]["ports"]}
    (endpoint,) = monitor["spec"]["endpoints"]
    assert endpoint["port"] in ports
    assert endpoint["path"] == "/metrics"
    assert re.fullmatch(r"\d+s", endpoint["interval"])
    assert int(endpoint["scrapeTimeout"][:-1]) < int(endpoint["interval"][:-1])
    # The Service's port reaches the container's port of that name.
    named = {port["name"]: port for port in container(rendered)["ports"]}
    assert ports[endpoint["port"]]["targetPort"] in named
    deployment = only(rendered, "Deployment")
    assert matches(
        {"matchLabels": service["spec"]["selector"]},
        deployment["spec"]["template"]["metadata"]["labels"],
    )


@pytest.mark.slow
def test_the_job_label_is_the_one_rules_and_dashboards_select(rendered: Objects) -> None:
    """The operator takes `job` from the Service label jobLabel names (else the Service's
    name): every `job=` matcher of the shipped rules and dashboards must match it."""
    service, monitor = only(rendered, "Service"), only(rendered, "ServiceMonitor")
    job = service["metadata"]["labels"].get(monitor["spec"].get("jobLabel", ""))
    job = job or service["metadata"]["name"]
    exprs = [rule["expr"] for rule in queries.rules()]
    exprs += [
        q.expr for board in queries.dashboards().values() for q in queries.panel_queries(board)
    ]
    matchers = re.findall(r'\bjob\s*(=~|=)\s*"([^"]*)"', "\n".join(exprs))
    for operator, value in matchers:
        if "$" in value:
            continue  # a dashboard variable: the user's choice
        assert re.fullmatch(value, job) if operator == "=~" else value == job, value


@pytest.mark.slow
def test_the_deployment_selects_its_own_pods(rendered: Objects) -> None:
    deployment = only(rendered, "Deployment")
    labels = deployment["spec"]["template"]["metadata"]["labels"]
    assert matches(deployment["spec"]["selector"], labels)
    for budget in of_kind(rendered, "PodDisruptionBudget"):
        assert matches(budget["spec"]["selector"], labels)


@pytest.mark.slow
def test_the_pod_runs_as_the_images_user_and_nothing_more(rendered: Objects) -> None:
    pod = only(rendered, "Deployment")["spec"]["template"]["spec"]
    context = pod["securityContext"]
    dockerfile = (ROOT / "Dockerfile").read_text(encoding="utf-8")
    (user,) = re.findall(r"^USER (\S+)$", dockerfile, re.MULTILINE)
    assert context["runAsNonRoot"] is True
    assert f"{context['runAsUser']}:{context['runAsGroup']}" == user
    assert context["fsGroup"] == context["runAsGroup"]
    assert context["seccompProfile"]["type"] == "RuntimeDefault"
    assert pod["automountServiceAccountToken"] is False
    box = container(rendered)["securityContext"]
    assert box["allowPrivilegeEscalation"] is False
    assert box["readOnlyRootFilesystem"] is True
    assert box["capabilities"]["drop"] == ["ALL"]
    resources = container(rendered)["resources"]
    assert {"cpu", "memory"} <= set(resources["requests"]) and "memory" in resources["limits"]


@pytest.mark.slow
def test_the_image_is_this_version(rendered: Objects) -> None:
    image = container(rendered)["image"]
    assert image == f"job-exporter:{PROJECT['version']}"


def serve_variables() -> set[str]:
    """The JOB_EXPORTER_* variable of each option of `serve`."""
    serve = cli.main.commands["serve"]
    return {p.envvar for p in serve.params if isinstance(p.envvar, str)}


@pytest.mark.slow
def test_settings_are_variables_serve_reads(rendered: Objects) -> None:
    """Every variable names an option of serve; the address matches the named port."""
    box = container(rendered)
    assert box["args"] == ["serve"]
    env = env_of(rendered)
    assert set(env) <= serve_variables()
    listen = env["JOB_EXPORTER_LISTEN"]["value"]
    (port,) = box["ports"]
    assert listen.rsplit(":", 1) == ["0.0.0.0", str(port["containerPort"])]


@pytest.mark.slow
def test_the_probes_hit_the_health_routes_on_the_named_port(rendered: Objects) -> None:
    box = container(rendered)
    names = {port["name"] for port in box["ports"]}
    probes = {kind: box[kind] for kind in ("startupProbe", "livenessProbe", "readinessProbe")}
    for probe in probes.values():
        assert probe["httpGet"]["port"] in names
    assert probes["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert probes["startupProbe"]["httpGet"]["path"] == "/healthz"
    assert probes["readinessProbe"]["httpGet"]["path"] == "/readyz"
    startup = probes["startupProbe"]
    assert startup["periodSeconds"] * startup["failureThreshold"] >= 30, "room to open the store"


def _writable_folders(objects: Objects) -> set[str]:
    return {mount["mountPath"] for mount in container(objects).get("volumeMounts", [])}


@pytest.mark.slow
def test_the_base_keeps_sqlite_on_a_claimed_volume(base: Objects) -> None:
    deployment = only(base, "Deployment")
    assert deployment["spec"]["replicas"] == 1
    assert deployment["spec"]["strategy"]["type"] == "Recreate", "two processes on one file"
    store = env_of(base)["JOB_EXPORTER_STORE"]["value"]
    assert store.startswith("sqlite:///")
    folder = str(Path(store.removeprefix("sqlite:///")).parent)
    mounts = {m["mountPath"]: m["name"] for m in container(base)["volumeMounts"]}
    volumes = {v["name"]: v for v in deployment["spec"]["template"]["spec"]["volumes"]}
    claim = volumes[mounts[folder]]["persistentVolumeClaim"]["claimName"]
    (pvc,) = of_kind(base, "PersistentVolumeClaim")
    assert pvc["metadata"]["name"] == claim
    assert pvc["spec"]["accessModes"] == ["ReadWriteOnce"]
    assert "/tmp" in _writable_folders(base), "request bodies spool to /tmp"


@pytest.mark.slow
def test_the_overlay_runs_two_replicas_on_postgresql_from_a_secret(overlay: Objects) -> None:
    deployment = only(overlay, "Deployment")
    assert deployment["spec"]["replicas"] == 2
    assert deployment["spec"]["strategy"]["type"] == "RollingUpdate"
    assert deployment["spec"]["strategy"]["rollingUpdate"]["maxUnavailable"] == 0
    store = env_of(overlay)["JOB_EXPORTER_STORE"]
    assert set(store) == {"name", "valueFrom"}, "a value beside valueFrom is refused"
    secret = store["valueFrom"]["secretKeyRef"]
    assert secret["name"] and secret["key"]
    assert not of_kind(overlay, "PersistentVolumeClaim")
    volumes = deployment["spec"]["template"]["spec"].get("volumes", [])
    assert not [v for v in volumes if "persistentVolumeClaim" in v]
    assert _writable_folders(overlay) == {"/tmp"}
    (budget,) = of_kind(overlay, "PodDisruptionBudget")
    assert budget["spec"]["minAvailable"] < deployment["spec"]["replicas"]


# The pod's command, run: the exporter started with the container's arguments and variables
# answers each probe on the named port.


@contextmanager
def started_as_the_pod(
    objects: Objects, store_url: str, tmp_path: Path
) -> Iterator[ExporterProcess]:
    box = container(objects)
    port = free_port()
    env = {}
    for name, item in env_of(objects).items():
        env[name] = item.get("value", "")
    env["JOB_EXPORTER_LISTEN"] = f"127.0.0.1:{port}"  # the pod's 0.0.0.0, kept on loopback
    env["JOB_EXPORTER_STORE"] = store_url  # the pod's volume, or its Secret
    process = ExporterProcess(*box["args"], env=env, cwd=tmp_path)
    try:
        yield process
    finally:
        process.stop()


def _probe_paths(objects: Objects) -> set[str]:
    box = container(objects)
    return {box[kind]["httpGet"]["path"] for kind in ("livenessProbe", "readinessProbe")}


@pytest.mark.slow
def test_the_base_pod_answers_its_probes(base: Objects, tmp_path: Path) -> None:
    with started_as_the_pod(base, sqlite_url(tmp_path / "job-exporter.db"), tmp_path) as process:
        for path in [*_probe_paths(base), "/metrics"]:
            response = requests.get(process.url + path, timeout=5)
            assert response.status_code == 200, path


@pytest.mark.slow
def test_the_overlay_pods_answer_their_probes_on_one_postgresql(
    overlay: Objects, postgres_cluster, tmp_path: Path
) -> None:
    """Both replicas, on one database as the Secret would name it, are ready."""
    url = postgres_cluster.new_database()
    with ExitStack() as stack:
        for _ in range(2):
            process = stack.enter_context(started_as_the_pod(overlay, url, tmp_path))
            for path in _probe_paths(overlay):
                response = requests.get(process.url + path, timeout=5)
                assert response.status_code == 200, path
