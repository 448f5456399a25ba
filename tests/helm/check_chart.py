#!/usr/bin/env python3
"""Checks helm/hookmesh with the real Helm library and the Kubernetes API schemas.

Helm comes from the `helm-python-sdk` package (import name `helm_python`): a ctypes binding to
libhelm_c, a C ABI over Helm's own Go SDK (v4), shipped inside the wheel. There is no `helm`
binary; this script calls the same code paths the CLI does:

  helm lint        -> helm_python.lint(chart, values, strict=True, kube_version=…)
  helm template    -> Chart.load(chart).render(values, name=…, namespace=…, is_install=True),
                      with values built like the CLI builds them: each -f file parsed by
                      helm_python.values_from_yaml and merged in order, then each --set parsed
                      by helm_python.parse_set_string (Helm's strvals) and merged on top; the
                      result is checked against values.schema.json as `helm template` does.

Every rendered manifest is validated against the OpenAPI-derived JSON schemas of the
Kubernetes API shipped by the `kubernetes-validate` package, in strict mode (unknown fields
are errors), for the oldest Kubernetes the chart supports and the newest the package knows.
The custom resources (KEDA ScaledObject, Prometheus Operator ServiceMonitor) have no schema
there; they get a minimal closed schema below that covers the fields this chart writes.

Then it asserts what a user of the chart relies on (autoscaler wiring, probes, grace
periods, disruption budgets, KEDA, Secret vs existingSecret, …), the README and the Grafana
dashboard included. Prints one line per check and `N passed, N failed` at the end; exits
non-zero when anything failed.

    python tests/helm/check_chart.py [-k SUBSTRING] [-v]
"""

from __future__ import annotations

import argparse
import base64
import copy
import json
import re
import sys
import time
import traceback
from pathlib import Path
from typing import Any, Callable

try:
    import helm_python as helm
    import jsonschema
    import kubernetes_validate
    import yaml
except ImportError as e:  # pragma: no cover - a clear message instead of a traceback
    sys.exit(
        f"check_chart: missing Python package ({e.name}); install tests/helm/requirements.txt "
        "(`make helm` or `bash tests/helm/run.sh` does it in .ci/.venv)"
    )

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "helm" / "hookmesh"
PRODUCTION = CHART / "examples" / "values-production.yaml"
README = CHART / "README.md"
DASHBOARD = ROOT / "deploy" / "grafana-dashboard.json"
METRICS_RS = ROOT / "crates" / "telemetry" / "src" / "metrics.rs"

STAGES = ["ingest", "router", "renderer", "dispatcher"]
RELEASE = "hookmesh"
NAMESPACE = "hookmesh"
GRPC_PORT, ADMIN_PORT = 7600, 7601
# Which stage owns which management API.
API_OWNERS = {
    "IngestService": "ingest",
    "WebhookService": "router",
    "TemplateService": "router",
    "TenantService": "router",
    "RenderService": "renderer",
    "DeliveryService": "dispatcher",
}
CRD_KINDS = {"ScaledObject", "ServiceMonitor"}


class CheckFailed(Exception):
    """A check's expectation did not hold; the message says which and why."""


def expect(condition: Any, message: str) -> None:
    if not condition:
        raise CheckFailed(message)


# --------------------------------------------------------------------------------------------
# Helm through helm-python-sdk
# --------------------------------------------------------------------------------------------


def merge_values(base: dict, override: dict) -> dict:
    """Helm's merge of -f files and --set: maps merge recursively, anything else replaces."""
    out = copy.deepcopy(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = merge_values(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def user_values(files: list[Path] = (), sets: list[str] = ()) -> dict:
    values: dict = {}
    for f in files:
        values = merge_values(values, helm.values_from_yaml(Path(f).read_text()))
    for s in sets:
        values = merge_values(values, helm.parse_set_string(s))
    return values


class Rendered:
    """The manifests of one `helm template`, parsed."""

    def __init__(self, manifests: dict[str, str], label: str):
        self.label = label
        self.sources = manifests
        self.notes = ""
        self.docs: list[dict] = []
        for path, text in sorted(manifests.items()):
            if path.endswith("NOTES.txt"):
                self.notes = text
                continue
            for doc in yaml.safe_load_all(text):
                if doc:
                    doc.setdefault("__source", path)
                    self.docs.append(doc)

    def all(self, kind: str) -> list[dict]:
        return [d for d in self.docs if d.get("kind") == kind]

    def names(self, kind: str) -> list[str]:
        return sorted(d["metadata"]["name"] for d in self.all(kind))

    def get(self, kind: str, name: str) -> dict:
        found = [d for d in self.all(kind) if d["metadata"]["name"] == name]
        expect(found, f"[{self.label}] no {kind} named {name}; {kind}s: {self.names(kind)}")
        return found[0]

    def deployment(self, stage: str, release: str = RELEASE) -> dict:
        return self.get("Deployment", stage_name(stage, release))

    def container(self, stage: str, release: str = RELEASE) -> dict:
        containers = self.deployment(stage, release)["spec"]["template"]["spec"]["containers"]
        expect(len(containers) == 1, f"[{self.label}] {stage}: expected one container, got {len(containers)}")
        return containers[0]


_chart = None


def chart() -> "helm.Chart":
    global _chart
    if _chart is None:
        _chart = helm.Chart.load(str(CHART))
    return _chart


def template(files: list[Path] = (), sets: list[str] = (), release: str = RELEASE, label: str = "") -> Rendered:
    """`helm template <release> helm/hookmesh -n hookmesh -f … --set …`."""
    values = user_values(files, sets)
    chart().validate_schema(chart().merge_values(values))
    manifests = chart().render(values, name=release, namespace=NAMESPACE, is_install=True)
    label = label or " ".join([*(f"-f {Path(f).name}" for f in files), *(f"--set {s}" for s in sets)]) or "defaults"
    return Rendered(manifests, label)


def template_error(files: list[Path] = (), sets: list[str] = ()) -> str:
    """Renders values that must be refused; returns Helm's message."""
    try:
        template(files, sets)
    except helm.HelmError as e:
        return str(e)
    raise CheckFailed(f"rendering with {list(sets)} succeeded but must fail")


def stage_name(stage: str, release: str = RELEASE) -> str:
    full = release if "hookmesh" in release else f"{release}-hookmesh"
    return f"{full[:52].rstrip('-')}-{stage}"


_renders: dict[tuple, Rendered] = {}


def cached(files: tuple = (), sets: tuple = (), label: str = "") -> Rendered:
    key = (tuple(str(f) for f in files), tuple(sets))
    if key not in _renders:
        _renders[key] = template(list(files), list(sets), label=label)
    return _renders[key]


def defaults() -> Rendered:
    return cached(label="defaults")


def production() -> Rendered:
    return cached((PRODUCTION,), label="values-production.yaml")


def production_keda() -> Rendered:
    return cached((PRODUCTION,), ("keda.enabled=true",), label="values-production.yaml + keda.enabled=true")


def everything() -> Rendered:
    """Every optional resource switched on, for schema validation."""
    return cached(
        (),
        (
            "keda.enabled=true,keda.authenticationRef=kafka-auth,keda.extraMetadata.tls=enable",
            "metrics.serviceMonitor.enabled=true,metrics.podAnnotations=true",
            "ingress.enabled=true,ingress.className=nginx,ingress.host=api.example.com",
            "ingest.autoscaling.enabled=true,router.autoscaling.enabled=true,renderer.autoscaling.enabled=true",
            "renderer.autoscaling.targetMemoryUtilizationPercentage=80",
            "dispatcher.autoscaling.targetMemoryUtilizationPercentage=85",
            "config.otlpEndpoint=http://otel:4317,config.allowNetworks={10.0.0.0/8,192.168.0.0/16}",
            "secret.masterKey=a2V5,secret.tokens={sha256:aa=operator,sha256:bb=tenant:acme}",
            "router.podAntiAffinity=hard,ingest.podAntiAffinity=",
            "imagePullSecrets[0].name=regcred,priorityClassName=high",
        ),
        label="everything enabled",
    )


# --------------------------------------------------------------------------------------------
# Kubernetes schemas
# --------------------------------------------------------------------------------------------

KUBE_MIN = "1.25"  # Chart.yaml kubeVersion: >=1.25.0-0
KUBE_LATEST = kubernetes_validate.utils.latest_version()
KUBE_VERSIONS = [KUBE_MIN, KUBE_LATEST]

_str = {"type": "string"}
_int = {"type": "integer"}
_labels = {"type": "object", "additionalProperties": _str}


def _obj(properties: dict, required: list[str] = ()) -> dict:
    return {"type": "object", "properties": properties, "required": list(required), "additionalProperties": False}


_metadata = _obj(
    {"name": _str, "namespace": _str, "labels": _labels, "annotations": _labels},
    ["name"],
)
# Minimal closed schemas of the custom resources, written from the KEDA v2 ScaledObject and
# Prometheus Operator ServiceMonitor CRDs for the fields this chart sets: a misspelt or
# misplaced field fails, a field the chart does not use is not covered.
CRD_SCHEMAS = {
    ("keda.sh/v1alpha1", "ScaledObject"): _obj(
        {
            "apiVersion": _str,
            "kind": _str,
            "metadata": _metadata,
            "spec": _obj(
                {
                    "scaleTargetRef": _obj({"apiVersion": _str, "kind": _str, "name": _str}, ["name"]),
                    "pollingInterval": _int,
                    "cooldownPeriod": _int,
                    "minReplicaCount": _int,
                    "maxReplicaCount": _int,
                    "advanced": _obj(
                        {"horizontalPodAutoscalerConfig": _obj({"name": _str, "behavior": {"type": "object"}})}
                    ),
                    "triggers": {
                        "type": "array",
                        "minItems": 1,
                        "items": _obj(
                            {
                                "type": _str,
                                "name": _str,
                                "metricType": {"enum": ["AverageValue", "Value", "Utilization"]},
                                "metadata": {"type": "object", "additionalProperties": _str},
                                "authenticationRef": _obj({"name": _str, "kind": _str}, ["name"]),
                            },
                            ["type", "metadata"],
                        ),
                    },
                },
                ["scaleTargetRef", "triggers"],
            ),
        },
        ["apiVersion", "kind", "metadata", "spec"],
    ),
    ("monitoring.coreos.com/v1", "ServiceMonitor"): _obj(
        {
            "apiVersion": _str,
            "kind": _str,
            "metadata": _metadata,
            "spec": _obj(
                {
                    "jobLabel": _str,
                    "namespaceSelector": _obj({"any": {"type": "boolean"}, "matchNames": {"type": "array", "items": _str}}),
                    "selector": _obj(
                        {
                            "matchLabels": _labels,
                            "matchExpressions": {
                                "type": "array",
                                "items": _obj(
                                    {"key": _str, "operator": {"enum": ["In", "NotIn", "Exists", "DoesNotExist"]},
                                     "values": {"type": "array", "items": _str}},
                                    ["key", "operator"],
                                ),
                            },
                        }
                    ),
                    "endpoints": {
                        "type": "array",
                        "minItems": 1,
                        "items": _obj(
                            {
                                "port": _str,
                                "path": _str,
                                "scheme": {"enum": ["http", "https"]},
                                "interval": {"type": "string", "pattern": "^(0|(([0-9]+)h)?(([0-9]+)m)?(([0-9]+)s)?(([0-9]+)ms)?)$"},
                                "scrapeTimeout": {"type": "string", "pattern": "^(0|(([0-9]+)h)?(([0-9]+)m)?(([0-9]+)s)?(([0-9]+)ms)?)$"},
                                "relabelings": {"type": "array", "items": {"type": "object"}},
                                "metricRelabelings": {"type": "array", "items": {"type": "object"}},
                            },
                            ["port"],
                        ),
                    },
                },
                ["selector", "endpoints"],
            ),
        },
        ["apiVersion", "kind", "metadata", "spec"],
    ),
}


def schema_errors(r: Rendered) -> list[str]:
    errors = []
    for doc in r.docs:
        doc = {k: v for k, v in doc.items() if k != "__source"}
        where = f"{doc.get('kind')}/{doc.get('metadata', {}).get('name')}"
        if doc.get("kind") in CRD_KINDS:
            schema = CRD_SCHEMAS.get((doc.get("apiVersion"), doc.get("kind")))
            if schema is None:
                errors.append(f"{where}: unexpected apiVersion {doc.get('apiVersion')}")
                continue
            for e in jsonschema.Draft202012Validator(schema).iter_errors(doc):
                errors.append(f"{where} (minimal CRD schema): {'.'.join(map(str, e.path))}: {e.message}")
            continue
        for version in KUBE_VERSIONS:
            try:
                kubernetes_validate.validate(doc, version, strict=True)
            except kubernetes_validate.ValidationError as e:
                errors.append(f"{where} (Kubernetes {version}): {'.'.join(map(str, e.path))}: {e.message}")
            except kubernetes_validate.SchemaNotFoundError as e:
                errors.append(f"{where} (Kubernetes {version}): {e.message}")
    return errors


# --------------------------------------------------------------------------------------------
# Checks
# --------------------------------------------------------------------------------------------

CHECKS: list[tuple[str, Callable[[], None]]] = []


def check(name: str):
    def register(fn: Callable[[], None]) -> Callable[[], None]:
        CHECKS.append((name, fn))
        return fn

    return register


def lint(files: list[Path] = (), sets: list[str] = ()) -> None:
    report = helm.lint(str(CHART), user_values(files, sets), strict=True, kube_version=f"v{KUBE_MIN}.0")
    problems = [m for m in report.get("messages", []) if m.get("severity", 0) >= 2]
    problems_text = [f"{m['path']}: {m['error']}" for m in problems] + list(report.get("errors") or [])
    expect(report.get("total_charts_linted") == 1, f"lint linted {report.get('total_charts_linted')} charts")
    expect(not problems_text, "helm lint --strict: " + "; ".join(problems_text))


@check("helm lint --strict (default values)")
def _():
    lint()


@check("helm lint --strict (examples/values-production.yaml, KEDA off and on)")
def _():
    lint([PRODUCTION])
    lint([PRODUCTION], ["keda.enabled=true"])


@check("helm template renders the expected resources (default values)")
def _():
    r = defaults()
    kinds = sorted(d["kind"] for d in r.docs)
    expected = sorted(
        ["ConfigMap", "Secret", "ServiceAccount", "HorizontalPodAutoscaler"]
        + ["Deployment", "Service", "PodDisruptionBudget"] * 4
        + ["Deployment", "Service"]  # the console
    )
    expect(kinds == expected, f"kinds {kinds}, expected {expected}")
    expect(r.names("Deployment") == sorted(stage_name(s) for s in STAGES + ["console"]), f"Deployments {r.names('Deployment')}")
    for doc in r.docs:
        expect(doc["metadata"].get("namespace") == NAMESPACE, f"{doc['kind']}/{doc['metadata']['name']} has no namespace {NAMESPACE}")


@check("helm template renders examples/values-production.yaml")
def _():
    r = production()
    expect(len(r.all("Deployment")) == 5, "four stage Deployments and the console")
    expect(not r.all("Secret"), "existingSecret is set: no Secret may be rendered")
    expect(len(r.all("ServiceMonitor")) == 1 and len(r.all("Ingress")) == 1, "ServiceMonitor and Ingress")
    expect(not r.all("ScaledObject"), "KEDA is off in the example")
    for stage in ["ingest", "router", "renderer"]:
        expect(r.deployment(stage)["spec"].get("replicas") == 3, f"{stage} replicas 3")
    hpa = r.get("HorizontalPodAutoscaler", stage_name("dispatcher"))
    expect((hpa["spec"]["minReplicas"], hpa["spec"]["maxReplicas"]) == (10, 40), "dispatcher HPA 10–40")
    expect("replicas" not in r.deployment("dispatcher")["spec"], "the HPA owns the dispatcher replica count")
    data = r.get("ConfigMap", f"{RELEASE}-config")["data"]
    expect(int(data["HOOKMESH_PARTITIONS"]) >= 40, "partitions cover the 40 dispatchers")


def _schema_check(render: Callable[[], Rendered]):
    def run():
        r = render()
        errors = schema_errors(r)
        expect(not errors, f"[{r.label}] {len(errors)} schema errors:\n    " + "\n    ".join(errors))
    return run


for _label, _render in [
    ("default values", defaults),
    ("values-production.yaml", production),
    ("values-production.yaml + KEDA", production_keda),
    ("every optional resource enabled", everything),
]:
    check(f"manifests valid against Kubernetes {KUBE_MIN} and {KUBE_LATEST} schemas, strict ({_label})")(
        _schema_check(_render)
    )


@check("dispatcher HPA: autoscaling/v2 on CPU, wired to the values")
def _():
    hpa = defaults().get("HorizontalPodAutoscaler", stage_name("dispatcher"))
    expect(hpa["apiVersion"] == "autoscaling/v2", f"apiVersion {hpa['apiVersion']}")
    ref = hpa["spec"]["scaleTargetRef"]
    expect(ref == {"apiVersion": "apps/v1", "kind": "Deployment", "name": stage_name("dispatcher")}, f"scaleTargetRef {ref}")
    spec = hpa["spec"]
    expect((spec["minReplicas"], spec["maxReplicas"]) == (2, 10), f"default bounds {spec['minReplicas']}–{spec['maxReplicas']}")
    r = template(sets=[
        "dispatcher.autoscaling.minReplicas=3,dispatcher.autoscaling.maxReplicas=17",
        "dispatcher.autoscaling.targetCPUUtilizationPercentage=55",
        "dispatcher.autoscaling.behavior.scaleDown.stabilizationWindowSeconds=120",
    ])
    spec = r.get("HorizontalPodAutoscaler", stage_name("dispatcher"))["spec"]
    expect((spec["minReplicas"], spec["maxReplicas"]) == (3, 17), f"--set bounds not followed: {spec['minReplicas']}–{spec['maxReplicas']}")
    cpu = [m for m in spec["metrics"] if m["resource"]["name"] == "cpu"]
    expect(len(cpu) == 1 and cpu[0]["resource"]["target"] == {"type": "Utilization", "averageUtilization": 55},
           f"CPU target not 55%: {spec['metrics']}")
    expect(spec.get("behavior", {}).get("scaleDown", {}).get("stabilizationWindowSeconds") == 120, "behavior passed through")
    expect("replicas" not in r.deployment("dispatcher")["spec"], "Deployment must leave replicas to the HPA")


@check("dispatcher HPA off: no HPA, Deployment replicas follow dispatcher.replicas")
def _():
    r = template(sets=["dispatcher.autoscaling.enabled=false,dispatcher.replicas=4"])
    expect(not r.all("HorizontalPodAutoscaler"), f"HPAs rendered: {r.names('HorizontalPodAutoscaler')}")
    expect(r.deployment("dispatcher")["spec"].get("replicas") == 4, "replicas 4")


@check("HPA for another stage on request; refused without a CPU request or with max < min")
def _():
    r = template(sets=["renderer.autoscaling.enabled=true,renderer.autoscaling.maxReplicas=9"])
    hpa = r.get("HorizontalPodAutoscaler", stage_name("renderer"))
    expect(hpa["spec"]["scaleTargetRef"]["name"] == stage_name("renderer") and hpa["spec"]["maxReplicas"] == 9, "renderer HPA")
    expect("replicas" not in r.deployment("renderer")["spec"], "renderer replicas left to its HPA")
    msg = template_error(sets=["dispatcher.resources.requests.cpu=null"])
    expect("resources.requests.cpu" in msg, f"message does not name the missing CPU request: {msg}")
    msg = template_error(sets=["dispatcher.autoscaling.minReplicas=5,dispatcher.autoscaling.maxReplicas=3"])
    expect("maxReplicas" in msg, f"message does not name maxReplicas: {msg}")


# The service each stage's readiness probe asks grpc.health.v1.Health about: one it mounts.
HEALTH_SERVICE = {
    "ingest": "hookmesh.v1.IngestService",
    "router": "hookmesh.v1.WebhookService",
    "renderer": "hookmesh.v1.RenderService",
    "dispatcher": "hookmesh.v1.DeliveryService",
}


@check("probes: readiness is gRPC health of the stage's own service on the gRPC port, liveness GET /healthz on admin")
def _():
    for r in [defaults(), production()]:
        data = r.get("ConfigMap", f"{RELEASE}-config")["data"]
        expect(data["HOOKMESH_ADMIN_ADDR"] == f"0.0.0.0:{ADMIN_PORT}", f"HOOKMESH_ADMIN_ADDR {data['HOOKMESH_ADMIN_ADDR']}")
        expect(data["HOOKMESH_GRPC_ADDR"] == f"0.0.0.0:{GRPC_PORT}", f"HOOKMESH_GRPC_ADDR {data['HOOKMESH_GRPC_ADDR']}")
        for stage in STAGES:
            c = r.container(stage)
            ports = {p["name"]: p["containerPort"] for p in c["ports"]}
            expect(ports == {"grpc": GRPC_PORT, "admin": ADMIN_PORT}, f"[{r.label}] {stage} ports {ports}")
            get = c.get("livenessProbe", {}).get("httpGet")
            expect(get, f"[{r.label}] {stage} has no livenessProbe.httpGet")
            port = ports.get(get["port"], get["port"])
            expect(get["path"] == "/healthz" and port == ADMIN_PORT,
                   f"[{r.label}] {stage} livenessProbe is {get['path']} on {get['port']}, expected /healthz on admin {ADMIN_PORT}")
            ready = c.get("readinessProbe", {})
            expect("httpGet" not in ready and "tcpSocket" not in ready and "exec" not in ready,
                   f"[{r.label}] {stage} readinessProbe has a second handler: {ready}")
            grpc = ready.get("grpc")
            expect(grpc, f"[{r.label}] {stage} has no readinessProbe.grpc: {ready}")
            # Kubernetes' gRPC probe takes a port number only (no named port).
            expect(grpc["port"] == GRPC_PORT, f"[{r.label}] {stage} readinessProbe.grpc.port {grpc['port']}, expected {GRPC_PORT}")
            expect(grpc.get("service") == HEALTH_SERVICE[stage],
                   f"[{r.label}] {stage} readinessProbe.grpc.service {grpc.get('service')!r}, expected {HEALTH_SERVICE[stage]}")
            expect(HEALTH_SERVICE[stage].removeprefix("hookmesh.v1.") in API_OWNERS
                   and API_OWNERS[HEALTH_SERVICE[stage].removeprefix("hookmesh.v1.")] == stage,
                   f"{stage} probes {HEALTH_SERVICE[stage]}, which another stage owns")
            expect(ready.get("periodSeconds") == 5 and ready.get("failureThreshold") == 3,
                   f"[{r.label}] {stage} readinessProbe timings from probes.readiness: {ready}")


@check("each Deployment runs the one image with args [<stage>] and reads the ConfigMap and Secret")
def _():
    r = defaults()
    images = {r.container(s)["image"] for s in STAGES}
    expect(len(images) == 1, f"stages use different images: {images}")
    expect(images == {"hookmesh:0.1.0"}, f"image {images} (repository hookmesh, tag = appVersion)")
    for stage in STAGES:
        c = r.container(stage)
        expect(c["args"] == [stage], f"{stage} args {c['args']}")
        refs = [(k, v["name"]) for e in c["envFrom"] for k, v in e.items()]
        expect(refs == [("configMapRef", f"{RELEASE}-config"), ("secretRef", f"{RELEASE}-secret")], f"{stage} envFrom {refs}")
        # Static Kafka group membership: each pod's name is its instance id.
        pod_name = [e for e in c.get("env", []) if e["name"] == "HOOKMESH_INSTANCE_ID"]
        expect(pod_name == [{"name": "HOOKMESH_INSTANCE_ID", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}}],
               f"{stage} HOOKMESH_INSTANCE_ID from the pod name: {pod_name}")
    off = template(sets=["config.staticMembership=false"])
    for stage in STAGES:
        names = [e["name"] for e in off.container(stage).get("env", [])]
        expect("HOOKMESH_INSTANCE_ID" not in names, f"{stage}: staticMembership=false still sets HOOKMESH_INSTANCE_ID")
    r = template(sets=["image.repository=reg.example/hm,image.tag=1.2.3,dispatcher.extraArgs={--verbose}"])
    expect(r.container("router")["image"] == "reg.example/hm:1.2.3", "image.repository/tag followed")
    expect(r.container("dispatcher")["args"] == ["dispatcher", "--verbose"], "extraArgs appended")


@check("ConfigMap carries the HOOKMESH_* settings and no secrets; OTLP only when set")
def _():
    data = defaults().get("ConfigMap", f"{RELEASE}-config")["data"]
    want = {
        "HOOKMESH_KAFKA": "kafka:9092", "HOOKMESH_REDIS": "redis://redis:6379/", "HOOKMESH_PARTITIONS": "12",
        "HOOKMESH_TOPIC_PREFIX": "hookmesh", "HOOKMESH_LOG_JSON": "true", "HOOKMESH_REQUIRE_HTTPS": "false",
        "HOOKMESH_ALLOW_NETWORKS": "",
    }
    for k, v in want.items():
        expect(data.get(k) == v, f"{k}={data.get(k)!r}, expected {v!r}")
    expect("OTEL_EXPORTER_OTLP_ENDPOINT" not in data, "OTLP endpoint set without config.otlpEndpoint")
    expect(not any(k in data for k in ["HOOKMESH_MASTER_KEY", "HOOKMESH_TOKENS"]), "secrets in the ConfigMap")
    expect(all(isinstance(v, str) for v in data.values()), "ConfigMap values must be strings")
    r = template(sets=[
        "config.otlpEndpoint=http://otel:4317,config.allowNetworks={10.0.0.0/8,172.16.0.0/12}",
        "config.retentionPerWebhook=1000000,config.breakerOpenSecs=2.5,config.requireHttps=true",
    ])
    data = r.get("ConfigMap", f"{RELEASE}-config")["data"]
    expect(data.get("OTEL_EXPORTER_OTLP_ENDPOINT") == "http://otel:4317", "OTLP endpoint")
    expect(data.get("HOOKMESH_ALLOW_NETWORKS") == "10.0.0.0/8,172.16.0.0/12", f"allow networks {data.get('HOOKMESH_ALLOW_NETWORKS')}")
    expect(data.get("HOOKMESH_RETENTION_PER_WEBHOOK") == "1000000", f"large integers stay integers: {data.get('HOOKMESH_RETENTION_PER_WEBHOOK')}")
    expect(data.get("HOOKMESH_BREAKER_OPEN_SECS") == "2.5" and data.get("HOOKMESH_REQUIRE_HTTPS") == "true", "floats and booleans")
    env = {e["name"]: e.get("value") for e in r.container("dispatcher").get("env", [])}
    expect(env.get("OTEL_SERVICE_NAME") == "hookmesh-dispatcher", f"OTEL_SERVICE_NAME {env}")
    msg = template_error(sets=["config.extraEnv.HOOKMESH_TOKENS=x"])
    expect("Secret" in msg, f"secret in config.extraEnv must be refused: {msg}")


@check("checksum/config rolls the pods when the ConfigMap changes, and only then")
def _():
    def sums(r: Rendered) -> set[str]:
        return {r.deployment(s)["spec"]["template"]["metadata"]["annotations"]["checksum/config"] for s in STAGES}

    base = sums(defaults())
    expect(len(base) == 1, f"stages disagree on the config checksum: {base}")
    expect(sums(template(sets=["dispatcher.replicas=7,ingest.resources.requests.cpu=1"])) == base,
           "a change outside the ConfigMap changed checksum/config")
    changed = sums(template(sets=["config.kafka=broker-1:9092"]))
    expect(len(changed) == 1 and changed != base, "a ConfigMap change did not change checksum/config on every stage")


@check("terminationGracePeriodSeconds and the preStop sleep follow the values")
def _():
    r = defaults()
    got = {s: r.deployment(s)["spec"]["template"]["spec"]["terminationGracePeriodSeconds"] for s in STAGES}
    expect(got == {"ingest": 30, "router": 30, "renderer": 30, "dispatcher": 60}, f"defaults {got}")
    for s in STAGES:
        pre = r.container(s)["lifecycle"]["preStop"]["exec"]["command"]
        expect(pre == ["sleep", "5"], f"{s} preStop {pre}")
    r = template(sets=["dispatcher.terminationGracePeriodSeconds=123,ingest.terminationGracePeriodSeconds=45",
                       "dispatcher.preStopSleepSeconds=12,router.preStopSleepSeconds=0"])
    spec = lambda s: r.deployment(s)["spec"]["template"]["spec"]  # noqa: E731
    expect(spec("dispatcher")["terminationGracePeriodSeconds"] == 123 and spec("ingest")["terminationGracePeriodSeconds"] == 45,
           "--set grace periods not followed")
    expect(r.container("dispatcher")["lifecycle"]["preStop"]["exec"]["command"] == ["sleep", "12"], "preStop sleep 12")
    expect("lifecycle" not in r.container("router"), "preStopSleepSeconds=0 must drop the preStop hook")
    expect(production().deployment("dispatcher")["spec"]["template"]["spec"]["terminationGracePeriodSeconds"] == 90, "production 90 s")
    msg = template_error(sets=["dispatcher.terminationGracePeriodSeconds=10,dispatcher.preStopSleepSeconds=10"])
    expect("terminationGracePeriodSeconds" in msg, f"grace period shorter than the preStop sleep must be refused: {msg}")


@check("PodDisruptionBudget per stage, selecting exactly that stage's pods")
def _():
    for r in [defaults(), production()]:
        deployments = {s: r.deployment(s) for s in STAGES}
        for stage in STAGES:
            pdb = r.get("PodDisruptionBudget", stage_name(stage))
            sel = pdb["spec"]["selector"]["matchLabels"]
            matched = [s for s, d in deployments.items() if matches(sel, d["spec"]["template"]["metadata"]["labels"])]
            expect(matched == [stage], f"[{r.label}] {stage} PDB selects {matched}")
            expect(("minAvailable" in pdb["spec"]) != ("maxUnavailable" in pdb["spec"]), f"[{r.label}] {stage}: exactly one of min/max")
    expect(defaults().get("PodDisruptionBudget", stage_name("ingest"))["spec"]["maxUnavailable"] == 1, "default maxUnavailable 1")
    p = production()
    expect(p.get("PodDisruptionBudget", stage_name("router"))["spec"] == {
        "minAvailable": 2, "selector": p.get("PodDisruptionBudget", stage_name("router"))["spec"]["selector"]}, "production router minAvailable 2")
    expect(p.get("PodDisruptionBudget", stage_name("dispatcher"))["spec"]["maxUnavailable"] == "10%", "percentages stay strings")
    r = template(sets=["renderer.pdb.minAvailable=50%,renderer.pdb.maxUnavailable=null,ingest.pdb.enabled=false"])
    expect(r.get("PodDisruptionBudget", stage_name("renderer"))["spec"].get("minAvailable") == "50%", "minAvailable 50%")
    expect(stage_name("ingest") not in r.names("PodDisruptionBudget"), "pdb.enabled=false")
    msg = template_error(sets=["router.pdb.minAvailable=1"])
    expect("not both" in msg, f"minAvailable and maxUnavailable together must be refused: {msg}")


def matches(selector: dict, labels: dict) -> bool:
    return all(labels.get(k) == v for k, v in selector.items())


@check("KEDA ScaledObject only when keda.enabled, targeting the dispatcher Deployment")
def _():
    for r in [defaults(), production()]:
        expect(not r.all("ScaledObject"), f"[{r.label}] ScaledObject rendered with keda.enabled=false")
    r = production_keda()
    objs = r.all("ScaledObject")
    expect(len(objs) == 1, f"{len(objs)} ScaledObjects")
    so = objs[0]
    expect(so["apiVersion"] == "keda.sh/v1alpha1", f"apiVersion {so['apiVersion']}")
    ref = so["spec"]["scaleTargetRef"]
    expect(ref.get("name") == stage_name("dispatcher") and ref.get("kind", "Deployment") == "Deployment", f"scaleTargetRef {ref}")
    r.deployment("dispatcher")  # the target exists
    expect((so["spec"]["minReplicaCount"], so["spec"]["maxReplicaCount"]) == (10, 40), "bounds from dispatcher.autoscaling")
    kafka = [t for t in so["spec"]["triggers"] if t["type"] == "kafka"]
    expect(len(kafka) == 1, "one kafka trigger")
    md = kafka[0]["metadata"]
    expect(md["consumerGroup"] == "hookmesh-dispatcher" and md["topic"] == "hookmesh.requests", f"group/topic {md}")
    prod_kafka = r.get("ConfigMap", f"{RELEASE}-config")["data"]["HOOKMESH_KAFKA"]
    expect(md["bootstrapServers"] == prod_kafka, "bootstrapServers default to config.kafka")
    expect(md["lagThreshold"] == "500", f"lagThreshold {md['lagThreshold']}")
    cpu = [t for t in so["spec"]["triggers"] if t["type"] == "cpu"]
    expect(len(cpu) == 1 and cpu[0]["metadata"]["value"] == "65", "CPU target carried into the ScaledObject")
    expect(stage_name("dispatcher") not in r.names("HorizontalPodAutoscaler"), "KEDA owns the dispatcher HPA: no second one")
    expect("replicas" not in r.deployment("dispatcher")["spec"], "Deployment must leave replicas to KEDA")
    r = template(sets=["keda.enabled=true,keda.lagThreshold=42,keda.bootstrapServers=kafka-lag:9092",
                       "config.topicPrefix=acme,dispatcher.autoscaling.enabled=false"])
    md = r.all("ScaledObject")[0]["spec"]["triggers"][0]["metadata"]
    expect((md["consumerGroup"], md["topic"], md["bootstrapServers"], md["lagThreshold"])
           == ("acme-dispatcher", "acme.requests", "kafka-lag:9092", "42"), f"values not followed: {md}")
    expect([t["type"] for t in r.all("ScaledObject")[0]["spec"]["triggers"]] == ["kafka"], "no CPU trigger when autoscaling is off")


@check("Secret from secret.* values, or existingSecret and no Secret")
def _():
    r = template(sets=["secret.masterKey=bWFzdGVy,secret.tokens={sha256:aa=operator,sha256:bb=tenant:acme}"])
    s = r.get("Secret", f"{RELEASE}-secret")
    data = {k: base64.b64decode(v).decode() for k, v in s["data"].items()}
    expect(data == {"HOOKMESH_MASTER_KEY": "bWFzdGVy", "HOOKMESH_TOKENS": "sha256:aa=operator,sha256:bb=tenant:acme"}, f"data {data}")
    for stage in STAGES:
        refs = [e["secretRef"]["name"] for e in r.container(stage)["envFrom"] if "secretRef" in e]
        expect(refs == [f"{RELEASE}-secret"], f"{stage} secretRef {refs}")
        expect("checksum/secret" in r.deployment(stage)["spec"]["template"]["metadata"]["annotations"], "checksum/secret")
    expect(defaults().get("Secret", f"{RELEASE}-secret").get("data") == {}, "no empty keys in the default Secret")
    expect("WARNING: no master key" in defaults().notes, "NOTES warn about a missing master key")
    r = template(sets=["existingSecret=hookmesh-prod,secret.masterKey=ignored"])
    expect(not r.all("Secret"), f"Secret rendered despite existingSecret: {r.names('Secret')}")
    for stage in STAGES:
        refs = [e["secretRef"]["name"] for e in r.container(stage)["envFrom"] if "secretRef" in e]
        expect(refs == ["hookmesh-prod"], f"{stage} secretRef {refs}")
        expect("checksum/secret" not in r.deployment(stage)["spec"]["template"]["metadata"]["annotations"], "no checksum of a Secret the chart does not render")
    expect("WARNING" not in r.notes, "no warnings with existingSecret")


@check("securityContext: non-root uid 10001, read-only root, no privilege escalation, drop ALL")
def _():
    for r in [defaults(), production()]:
        for stage in STAGES:
            pod = r.deployment(stage)["spec"]["template"]["spec"]
            c = r.container(stage)
            sc = c["securityContext"]
            expect(pod["securityContext"].get("runAsNonRoot") is True and pod["securityContext"].get("runAsUser") == 10001, f"{stage} pod securityContext")
            expect(sc.get("runAsNonRoot") is True and sc.get("runAsUser") == 10001, f"{stage} runAsUser")
            expect(sc.get("readOnlyRootFilesystem") is True, f"{stage} readOnlyRootFilesystem")
            expect(sc.get("allowPrivilegeEscalation") is False, f"{stage} allowPrivilegeEscalation")
            expect(sc.get("capabilities", {}).get("drop") == ["ALL"], f"{stage} capabilities.drop")
            expect({"name": "tmp", "mountPath": "/tmp"} in c["volumeMounts"], f"{stage}: writable /tmp")
            expect(pod.get("automountServiceAccountToken") is False, f"{stage}: no API token mounted")


@check("Services: one per stage with grpc 7600 and admin 7601, selecting only that stage")
def _():
    r = defaults()
    for stage in STAGES:
        svc = r.get("Service", stage_name(stage))
        ports = {p["name"]: (p["port"], p["targetPort"]) for p in svc["spec"]["ports"]}
        expect(ports == {"grpc": (GRPC_PORT, "grpc"), "admin": (ADMIN_PORT, "admin")}, f"{stage} ports {ports}")
        matched = [s for s in STAGES if matches(svc["spec"]["selector"], r.deployment(s)["spec"]["template"]["metadata"]["labels"])]
        expect(matched == [stage], f"{stage} Service selects {matched}")


@check("Ingress routes each management API path to the stage that owns it")
def _():
    r = production()
    ing = r.all("Ingress")[0]
    paths = {p["path"]: p["backend"]["service"] for rule in ing["spec"]["rules"] for p in rule["http"]["paths"]}
    for api, stage in API_OWNERS.items():
        backend = paths.get(f"/hookmesh.v1.{api}")
        expect(backend == {"name": stage_name(stage), "port": {"name": "grpc"}}, f"/hookmesh.v1.{api} -> {backend}, expected {stage}")
        r.get("Service", stage_name(stage))
    # Server reflection in both versions (grpcurl asks v1, grpcio-reflection v1alpha).
    for version in ["v1", "v1alpha"]:
        backend = paths.get(f"/grpc.reflection.{version}.ServerReflection")
        expect(backend == {"name": stage_name("router"), "port": {"name": "grpc"}},
               f"/grpc.reflection.{version}.ServerReflection -> {backend}, expected router")
    expect(all(p["pathType"] == "Prefix" for rule in ing["spec"]["rules"] for p in rule["http"]["paths"]), "Prefix paths")
    expect([rule.get("host") for rule in ing["spec"]["rules"]] == ["hookmesh-api.example.com"], "ingress.host")
    expect(ing["spec"].get("ingressClassName") == "nginx" and ing["spec"].get("tls"), "className and tls")


@check("ServiceMonitor scrapes /metrics on the admin port of all four stage Services")
def _():
    expect(not defaults().all("ServiceMonitor"), "ServiceMonitor rendered by default")
    r = production()
    sm = r.all("ServiceMonitor")[0]
    expect(sm["metadata"]["labels"].get("release") == "kube-prometheus-stack", "serviceMonitor.labels")
    ep = sm["spec"]["endpoints"]
    expect(len(ep) == 1 and ep[0]["port"] == "admin" and ep[0]["path"] == "/metrics", f"endpoints {ep}")
    expect(any(rl.get("targetLabel") == "stage" for rl in ep[0]["relabelings"]), "adds the stage label")
    sel = sm["spec"]["selector"]
    selected = []
    for svc in r.all("Service"):
        labels = svc["metadata"]["labels"]
        ok = matches(sel["matchLabels"], labels) and all(labels.get(e["key"]) in e["values"] for e in sel.get("matchExpressions", []))
        if ok:
            selected.append(svc["metadata"]["name"])
            expect("admin" in [p["name"] for p in svc["spec"]["ports"]], f"{svc['metadata']['name']} has no admin port")
    expect(sorted(selected) == sorted(stage_name(s) for s in STAGES), f"selects {selected}")


@check("anti-affinity presets, explicit affinity, spread constraints and scheduling per stage")
def _():
    r = defaults()
    term = r.deployment("dispatcher")["spec"]["template"]["spec"]["affinity"]["podAntiAffinity"]["preferredDuringSchedulingIgnoredDuringExecution"][0]
    expect(term["podAffinityTerm"]["labelSelector"]["matchLabels"]["app.kubernetes.io/component"] == "dispatcher", "soft preset selects its own stage")
    r = template(sets=[
        "router.podAntiAffinity=hard,renderer.affinity.nodeAffinity.requiredDuringSchedulingIgnoredDuringExecution.nodeSelectorTerms[0].matchExpressions[0].key=pool",
        "renderer.affinity.nodeAffinity.requiredDuringSchedulingIgnoredDuringExecution.nodeSelectorTerms[0].matchExpressions[0].operator=Exists",
        "dispatcher.nodeSelector.pool=dispatch,nodeSelector.pool=apps,dispatcher.tolerations[0].key=dedicated,dispatcher.tolerations[0].operator=Exists",
        "dispatcher.topologySpreadConstraints[0].maxSkew=1,dispatcher.topologySpreadConstraints[0].topologyKey=topology.kubernetes.io/zone",
        "dispatcher.topologySpreadConstraints[0].whenUnsatisfiable=ScheduleAnyway",
    ])
    spec = lambda s: r.deployment(s)["spec"]["template"]["spec"]  # noqa: E731
    hard = spec("router")["affinity"]["podAntiAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"][0]
    expect(hard["labelSelector"]["matchLabels"]["app.kubernetes.io/component"] == "router", "hard preset")
    expect(set(spec("renderer")["affinity"]) == {"nodeAffinity"}, "a stage's own affinity replaces the preset")
    expect(spec("dispatcher")["nodeSelector"] == {"pool": "dispatch"} and spec("ingest")["nodeSelector"] == {"pool": "apps"},
           "stage nodeSelector wins, chart-wide applies to the others")
    expect(spec("dispatcher")["tolerations"] == [{"key": "dedicated", "operator": "Exists"}] and "tolerations" not in spec("router"), "tolerations per stage")
    tsc = spec("dispatcher")["topologySpreadConstraints"][0]
    expect(tsc["labelSelector"]["matchLabels"]["app.kubernetes.io/component"] == "dispatcher", "spread constraint selects its stage")
    msg = template_error(sets=["ingest.podAntiAffinity=sometimes"])
    expect("podAntiAffinity" in msg, f"unknown preset must be refused: {msg}")


@check("resource names follow the release name and fit 63 characters")
def _():
    r = template(release="eu-west-prod")
    expect(r.names("Deployment") == sorted(f"eu-west-prod-hookmesh-{s}" for s in STAGES + ["console"]), f"names {r.names('Deployment')}")
    long = "a" * 53
    r = template(release=long)
    for doc in r.docs:
        expect(len(doc["metadata"]["name"]) <= 63, f"{doc['kind']} name too long: {doc['metadata']['name']}")
    expect(len(set(r.names("Deployment"))) == 5, "distinct stage names after truncation")


@check("console: its own Deployment and Service, a client of each stage's API, no credentials")
def _():
    r = defaults()
    name = stage_name("console")
    c = r.get("Deployment", name)["spec"]["template"]["spec"]["containers"][0]
    args = c["args"]
    expect(args[0] == "console" and f"--api=http://{stage_name('router')}:{GRPC_PORT}" in args, f"console args {args}")
    for api, stage in API_OWNERS.items():
        if stage != "router":
            expect(f"--api-route={api}=http://{stage_name(stage)}:{GRPC_PORT}" in args, f"{api} not routed to {stage}: {args}")
    expect("envFrom" not in c, "the console reads neither the ConfigMap nor the Secret")
    expect(c["readinessProbe"]["httpGet"] == {"path": "/healthz", "port": "http"}, f"readiness {c['readinessProbe']}")
    sc = c["securityContext"]
    expect(sc.get("readOnlyRootFilesystem") is True and sc.get("runAsNonRoot") is True, f"securityContext {sc}")
    svc = r.get("Service", name)
    expect([(p["name"], p["port"]) for p in svc["spec"]["ports"]] == [("http", 7700)], f"console Service ports {svc['spec']['ports']}")
    expect(matches(svc["spec"]["selector"], r.get("Deployment", name)["spec"]["template"]["metadata"]["labels"]), "Service selects the console")
    for stage in STAGES:
        expect(not matches(svc["spec"]["selector"], r.deployment(stage)["spec"]["template"]["metadata"]["labels"]), f"console Service selects {stage}")
    r = template(sets=["console.frameOrigins={https://app.example.com},console.secureCookies=true"])
    args = r.get("Deployment", name)["spec"]["template"]["spec"]["containers"][0]["args"]
    expect("--console-frame-origins=https://app.example.com" in args and "--console-secure-cookies" in args, f"{args}")
    off = template(sets=["console.enabled=false"])
    expect(name not in off.names("Deployment") and name not in off.names("Service"), "console.enabled=false renders no console")
    for bad in ["console.frameOrigins={app.example.com}", "console.port=0"]:
        try:
            template(sets=[bad])
        except helm.HelmError:
            continue
        raise CheckFailed(f"--set {bad} was accepted")


@check("values.schema.json refuses misspelt and mistyped values")
def _():
    for bad in ["dispatcher.autoscalling.enabled=true", "dispatcher.replicas=many", "keda.enable=true", "config.partitions=0"]:
        try:
            template(sets=[bad])
        except helm.HelmError:
            continue
        raise CheckFailed(f"--set {bad} was accepted")


@check("README: values table covers every value, API routing documented")
def _():
    text = README.read_text()
    values = yaml.safe_load((CHART / "values.yaml").read_text())
    documented = value_keys(values)
    missing = [k for k in documented if f"`{k}`" not in text]
    expect(not missing, f"values missing from {README.relative_to(ROOT)}: {missing}")
    expect("\n## Values\n" in text, "README has no `## Values` section")
    rows = re.findall(r"^\| `([^`]+)` \|", text.split("\n## Values\n", 1)[1], re.M)
    stale = [k for k in rows if k not in documented]
    expect(not stale, f"README documents values that values.yaml does not have: {stale}")
    for api, stage in API_OWNERS.items():
        expect(re.search(rf"{api}.*{stage}", text), f"README does not say {api} -> {stage}")
    example = PRODUCTION.read_text().rstrip()
    expect(f"```yaml\n{example}\n```" in text,
           "README must show examples/values-production.yaml verbatim (copy the file into its ```yaml block)")


def value_keys(values: dict, prefix: str = "") -> list[str]:
    """Documented keys: leaves, and maps/lists that are free-form (resources, affinity, …).
    Keys under a stage are documented once as `<stage>.key`."""
    keys = []
    for k, v in values.items():
        path = f"{prefix}{k}"
        if not prefix and k in STAGES:
            path = "<stage>"
        if isinstance(v, dict) and v and k not in FREE_FORM:
            keys += value_keys(v, f"{path}.")
        else:
            keys.append(path)
    return sorted(set(keys))


FREE_FORM = {"resources", "podSecurityContext", "securityContext", "behavior", "extraEnv", "extraMetadata", "liveness", "readiness"}


@check("Grafana dashboard: valid JSON over exactly the metrics hookmesh exports")
def _():
    dash = json.loads(DASHBOARD.read_text())
    exported = set(re.findall(r"`(hookmesh_[a-z_]+)`", METRICS_RS.read_text()))
    expect(len(exported) >= 10, f"could not read the metric table of {METRICS_RS.relative_to(ROOT)}")
    exprs = [t["expr"] for p in panels(dash) for t in p.get("targets", [])]
    used = set()
    for e in exprs:
        for m in re.findall(r"\bhookmesh_[a-z_]+", e):
            base = re.sub(r"_(bucket|sum|count)$", "", m)  # a histogram's series
            used.add(base if base in exported else m)
    unknown = sorted(used - exported)
    expect(not unknown, f"dashboard queries metrics hookmesh does not export: {unknown}")
    unused = sorted(exported - used)
    expect(not unused, f"metrics without a panel: {unused}")
    for h in ["hookmesh_delivery_latency_seconds", "hookmesh_response_time_seconds"]:
        for q in ["0.5", "0.99"]:
            expect(any(f"histogram_quantile({q}" in e and f"{h}_bucket" in e for e in exprs), f"no p{q} panel for {h}")
    variables = {v["name"] for v in dash.get("templating", {}).get("list", [])}
    expect({"job", "stage"} <= variables, f"variables {variables}")
    expect(all("$job" in e and "$stage" in e for e in exprs), "every query filters on $job and $stage")
    ids = [p["id"] for p in panels(dash)]
    expect(len(ids) == len(set(ids)), "panel ids are unique")


def panels(dash: dict) -> list[dict]:
    out = []
    for p in dash.get("panels", []):
        out.append(p)
        out += p.get("panels", [])
    return out


# --------------------------------------------------------------------------------------------


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("-k", help="run only checks whose name contains this text")
    parser.add_argument("-v", "--verbose", action="store_true", help="print tracebacks of failures")
    args = parser.parse_args()
    started = time.monotonic()
    print(f"helm-python-sdk {helm.__version__}: libhelm_c {helm.helm_c_version()}, Helm SDK {helm.helm_sdk_version()}")
    print(f"kubernetes-validate {kubernetes_validate.version.__version__}: schemas for Kubernetes {', '.join(KUBE_VERSIONS)}")
    passed = failed = 0
    for name, fn in CHECKS:
        if args.k and args.k not in name:
            continue
        t0 = time.monotonic()
        try:
            fn()
        except CheckFailed as e:
            failed += 1
            print(f"FAIL {name}\n     {e}")
        except helm.HelmError as e:
            failed += 1
            print(f"FAIL {name}\n     helm: {e}")
        except Exception as e:  # a bug in a check, or a manifest of unexpected shape
            failed += 1
            print(f"FAIL {name}\n     {type(e).__name__}: {e}")
            if args.verbose:
                traceback.print_exc()
        else:
            passed += 1
            print(f"ok   {name} ({time.monotonic() - t0:.1f}s)")
    print(f"chart check took {time.monotonic() - started:.1f}s")
    print(f"{passed} passed, {failed} failed")
    return 1 if failed or not passed else 0


if __name__ == "__main__":
    sys.exit(main())
