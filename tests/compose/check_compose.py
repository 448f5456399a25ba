#!/usr/bin/env python3
"""Static wiring check of docker-compose.yml and deploy/otel-collector.yaml, for CI without Docker.

Nothing is started: the compose file and the collector config are parsed and cross-checked
against each other, against the repository (bind-mounted paths, build context, Dockerfile) and
against hookmesh's own sources (the `HOOKMESH_*` variables it reads, its subcommands, its
default ports), so that a typo or a dangling reference fails CI instead of `docker compose up`.

  compose      parses (anchors and `<<:` merge keys resolved, `${VAR:-default}` replaced by the
               default), only Compose-spec keys; every service has `image` or `build` (context
               and Dockerfile exist); `depends_on` names existing services (`service_healthy`
               ones have a healthcheck); bind-mounted host paths exist; no host port is
               published twice (replicas of one service included).
  hookmesh     services running the hookmesh image get only variables hookmesh reads
               (services/hookmesh/src/config.rs `env = "HOOKMESH_…"`, the variables read by
               crates/telemetry, the standard OTEL_* / RUST_LOG ones); HOOKMESH_KAFKA and
               HOOKMESH_REDIS name compose services; OTEL_EXPORTER_OTLP_ENDPOINT is the
               collector's OTLP/HTTP receiver; published ports are ones the stage listens on.
  collector    every component of service.pipelines is defined; traces and metrics pipelines
               receive otlp; the traces exporter sends to a compose service; the collector
               service runs with the mounted config.
  stages       ingest, router, renderer and dispatcher each run exactly once (a `standalone`
               service counts for all four).

Relative host paths in the compose file are resolved against the repository root (where
docker-compose.yml lives), also when --compose points at a copy elsewhere. Prints one line
per check and `N passed, N failed` at the end; exits non-zero when anything failed.

    python tests/compose/check_compose.py [--compose PATH] [--collector PATH] [-k SUBSTRING] [-v]
"""

from __future__ import annotations

import argparse
import difflib
import json
import os
import re
import shlex
import sys
import traceback
from pathlib import Path
from typing import Any, Callable
from urllib.parse import urlsplit

try:
    import yaml
except ImportError:  # pragma: no cover - a clear message instead of a traceback
    sys.exit(
        "check_compose: missing Python package PyYAML; install tests/helm/requirements.txt "
        "(`make helm` or `bash tests/helm/run.sh` does it in .ci/.venv)"
    )

ROOT = Path(__file__).resolve().parents[2]
COMPOSE = ROOT / "docker-compose.yml"
COLLECTOR = ROOT / "deploy" / "otel-collector.yaml"
HOOKMESH_SRC = ROOT / "services" / "hookmesh" / "src"
CONFIG_RS = HOOKMESH_SRC / "config.rs"
MAIN_RS = HOOKMESH_SRC / "main.rs"
RUNTIME_RS = HOOKMESH_SRC / "runtime.rs"
TELEMETRY_SRC = ROOT / "crates" / "telemetry" / "src"
HOOKMESH_DOCKERFILE = ROOT / "deploy" / "Dockerfile"

STAGES = ["ingest", "router", "renderer", "dispatcher"]
ROLE_COMMANDS = {*STAGES, "standalone"}  # subcommands that take the shared SettingsArgs
OTLP_HTTP_DEFAULT_PORT = 4318

# Keys of the Compose specification (compose-spec/compose-spec, schema/compose-spec.json);
# `x-*` extension keys are allowed everywhere.
TOP_LEVEL_KEYS = {"version", "name", "include", "services", "models", "networks", "volumes", "secrets", "configs"}
SERVICE_KEYS = {
    "develop", "deploy", "annotations", "attach", "build", "blkio_config", "cap_add", "cap_drop", "cgroup",
    "cgroup_parent", "command", "configs", "container_name", "cpu_count", "cpu_percent", "cpu_shares",
    "cpu_quota", "cpu_period", "cpu_rt_period", "cpu_rt_runtime", "cpus", "cpuset", "credential_spec",
    "depends_on", "device_cgroup_rules", "devices", "dns", "dns_opt", "dns_search", "domainname", "entrypoint",
    "env_file", "label_file", "environment", "expose", "extends", "provider", "external_links", "extra_hosts",
    "gpus", "group_add", "healthcheck", "hostname", "image", "init", "ipc", "isolation", "labels", "links",
    "logging", "mac_address", "mem_limit", "mem_reservation", "mem_swappiness", "memswap_limit",
    "network_mode", "models", "networks", "oom_kill_disable", "oom_score_adj", "pid", "pids_limit",
    "platform", "ports", "post_start", "pre_stop", "privileged", "profiles", "pull_policy",
    "pull_refresh_after", "read_only", "restart", "runtime", "scale", "security_opt", "shm_size", "secrets",
    "sysctls", "stdin_open", "stop_grace_period", "stop_signal", "storage_opt", "tmpfs", "tty", "ulimits",
    "use_api_socket", "user", "uts", "userns_mode", "volumes", "volumes_from", "working_dir",
}
HEALTHCHECK_KEYS = {"disable", "interval", "retries", "test", "timeout", "start_period", "start_interval"}

# Standard OpenTelemetry SDK / OTLP exporter variables (OpenTelemetry specification,
# "Environment Variable Specification" and "OTLP Exporter Configuration").
OTEL_STANDARD = re.compile(
    r"OTEL_(SDK_DISABLED|RESOURCE_ATTRIBUTES|SERVICE_NAME|LOG_LEVEL|PROPAGATORS|TRACES_SAMPLER(_ARG)?"
    r"|(TRACES|METRICS|LOGS)_EXPORTER|BSP_(SCHEDULE_DELAY|EXPORT_TIMEOUT|MAX_QUEUE_SIZE|MAX_EXPORT_BATCH_SIZE)"
    r"|BLRP_(SCHEDULE_DELAY|EXPORT_TIMEOUT|MAX_QUEUE_SIZE|MAX_EXPORT_BATCH_SIZE)"
    r"|METRIC_EXPORT_(INTERVAL|TIMEOUT)|METRICS_EXEMPLAR_FILTER"
    r"|(SPAN_)?ATTRIBUTE_(VALUE_LENGTH|COUNT)_LIMIT|SPAN_(EVENT|LINK)_COUNT_LIMIT|(EVENT|LINK)_ATTRIBUTE_COUNT_LIMIT"
    r"|EXPORTER_OTLP_((TRACES|METRICS|LOGS)_)?"
    r"(ENDPOINT|INSECURE|CERTIFICATE|CLIENT_KEY|CLIENT_CERTIFICATE|HEADERS|COMPRESSION|TIMEOUT|PROTOCOL)"
    r"|EXPORTER_OTLP_METRICS_(TEMPORALITY_PREFERENCE|DEFAULT_HISTOGRAM_AGGREGATION))"
)
RUST_RUNTIME_VARS = {"RUST_LOG", "RUST_BACKTRACE", "RUST_LIB_BACKTRACE"}


class CheckFailed(Exception):
    """A check's expectation did not hold; the message says which and why."""


def expect(condition: Any, message: str) -> None:
    if not condition:
        raise CheckFailed(message)


def expect_none(problems: list[str]) -> None:
    """Fails with every problem found, one per line."""
    if len(problems) == 1:
        raise CheckFailed(problems[0])
    if problems:
        raise CheckFailed(f"{len(problems)} problems:\n       - " + "\n       - ".join(problems))


# --------------------------------------------------------------------------------------------
# Inputs
# --------------------------------------------------------------------------------------------

ARGS = argparse.Namespace(compose=COMPOSE, collector=COLLECTOR)
_cache: dict[str, Any] = {}


def _interpolate(node: Any) -> Any:
    """Compose's `${VAR:-default}` / `${VAR-default}` become the default, `${VAR}` the
    environment's value (empty when unset), `$$` a `$`."""
    if isinstance(node, dict):
        return {k: _interpolate(v) for k, v in node.items()}
    if isinstance(node, list):
        return [_interpolate(v) for v in node]
    if isinstance(node, str) and "$" in node:
        def sub(m: re.Match) -> str:
            if m.group(0) == "$$":
                return "$"
            name, op, default = m.group(1), m.group(2), m.group(3) or ""
            value = os.environ.get(name)
            if op in (":-", ":?") and not value or op in ("-", "?") and value is None:
                return default
            return value or ""

        return re.sub(r"\$\$|\$\{([A-Za-z_][A-Za-z0-9_]*)(?:(:?[-?])([^}]*))?\}", sub, node)
    return node


def _load(key: str, path: Path, what: str, first_check: str, detail: bool, prepare=lambda doc: doc) -> dict:
    """A YAML mapping read once; when it cannot be used, only its first check (`detail`) says
    why and the others are skipped."""
    if key not in _cache:
        try:
            doc = yaml.safe_load(Path(path).read_text())
        except (OSError, yaml.YAMLError) as e:
            _cache[key] = CheckFailed(f"{path}: {e}")
        else:
            _cache[key] = prepare(doc) if isinstance(doc, dict) else CheckFailed(
                f"{path}: top level is {type(doc).__name__}, not a mapping"
            )
    c = _cache[key]
    if isinstance(c, CheckFailed):
        raise CheckFailed(f"{what} unusable: {c}" if detail else f"skipped: {path} is unusable (see {first_check})")
    return c


def compose(detail: bool = False) -> dict:
    """The parsed compose file, `${VAR:-default}` resolved."""
    return _load("compose", ARGS.compose, "compose file", "the first check", detail, _interpolate)


def services() -> dict[str, dict]:
    s = compose().get("services")
    expect(isinstance(s, dict) and s, "no services")
    bad = [n for n, v in s.items() if not isinstance(v, dict)]
    expect(not bad, f"services that are not mappings: {bad}")
    return s


def collector(detail: bool = False) -> dict:
    return _load("collector", ARGS.collector, "collector config", "the first collector check", detail)


def host_path(p: str) -> Path:
    """A compose host path: relative ones against the repository root."""
    p = os.path.expanduser(p)
    return Path(p) if os.path.isabs(p) else (ROOT / p)


def rel(p: Path) -> str:
    try:
        return str(p.resolve().relative_to(ROOT))
    except ValueError:
        return str(p)


def env_of(svc: dict) -> dict[str, str | None]:
    env = svc.get("environment") or {}
    if isinstance(env, list):
        out: dict[str, str | None] = {}
        for item in env:
            k, sep, v = str(item).partition("=")
            out[k] = v if sep else None
        return out
    return {str(k): (None if v is None else str(v)) for k, v in env.items()}


def command_of(svc: dict, default: list[str]) -> list[str]:
    cmd = svc.get("command")
    if cmd is None:
        return list(default)
    return shlex.split(cmd) if isinstance(cmd, str) else [str(c) for c in cmd]


def depends_on(svc: dict) -> dict[str, dict]:
    d = svc.get("depends_on") or {}
    if isinstance(d, list):
        return {str(n): {"condition": "service_started"} for n in d}
    return {str(n): (v or {}) for n, v in d.items()}


def build_of(svc: dict) -> tuple[Path, Path] | None:
    """(context, Dockerfile) of a service's build, or None."""
    b = svc.get("build")
    if b is None:
        return None
    if isinstance(b, str):
        b = {"context": b}
    context = host_path(b.get("context", "."))
    return context, context / b.get("dockerfile", "Dockerfile")


def replicas(svc: dict) -> int:
    r = (svc.get("deploy") or {}).get("replicas", svc.get("scale", 1))
    return int(r if r is not None else 1)


# --------------------------------------------------------------------------------------------
# What hookmesh reads (from its sources)
# --------------------------------------------------------------------------------------------


def hookmesh_settings_vars() -> set[str]:
    """`HOOKMESH_*` of SettingsArgs (every role) and of the telemetry crate (logging)."""
    names = set(re.findall(r'env\s*=\s*"(HOOKMESH_[A-Z0-9_]+)"', CONFIG_RS.read_text()))
    expect(len(names) >= 10, f"could not read the env attributes of {rel(CONFIG_RS)} (found {sorted(names)})")
    for rs in sorted(TELEMETRY_SRC.rglob("*.rs")):
        names |= set(re.findall(r'env::var(?:_os)?\(\s*"(HOOKMESH_[A-Z0-9_]+)"', rs.read_text()))
    return names


def telemetry_otel_vars() -> set[str]:
    names: set[str] = set()
    for rs in sorted(TELEMETRY_SRC.rglob("*.rs")):
        names |= set(re.findall(r'"(OTEL_[A-Z0-9_]+)"', rs.read_text()))
    return names


def subcommand_vars(sub: str) -> set[str]:
    """Variables a non-role subcommand (receive, ctl, simulate, …) reads: its clap env attributes."""
    src = HOOKMESH_SRC / f"{sub.replace('-', '_')}.rs"
    return set(re.findall(r'env\s*=\s*"([A-Z][A-Z0-9_]+)"', src.read_text())) if src.exists() else set()


def subcommands() -> set[str]:
    text = MAIN_RS.read_text()
    m = re.search(r"enum Command \{(.*?)\n\}", text, re.S)
    expect(m, f"no `enum Command` in {rel(MAIN_RS)}")
    variants = re.findall(r"^\s{4}([A-Z][A-Za-z0-9]*)\b", m.group(1), re.M)
    names = {re.sub(r"(?<!^)(?=[A-Z])", "-", v).lower() for v in variants}
    expect(ROLE_COMMANDS <= names, f"{rel(MAIN_RS)}: subcommands {sorted(names)} lack some of {sorted(ROLE_COMMANDS)}")
    return names


def role_default_ports() -> dict[str, tuple[int, int]]:
    ports = {"standalone": (7600, 7601)}  # standalone.rs: resolve(7600, 7601)
    for role, g, a in re.findall(r"Role::(\w+) => \((\d+), (\d+)\)", RUNTIME_RS.read_text()):
        ports[role.lower()] = (int(g), int(a))
    return ports


def dockerfile_cmd(dockerfile: Path) -> list[str]:
    """The exec-form CMD of a Dockerfile (what runs when compose sets no `command`)."""
    cmd: list[str] = []
    for line in dockerfile.read_text().splitlines():
        m = re.match(r"\s*CMD\s+(\[.*\])\s*$", line)
        if m:
            cmd = json.loads(m.group(1))
    return cmd


def hookmesh_services() -> dict[str, dict]:
    """Services that run the hookmesh image: built from deploy/Dockerfile, or using its tag."""
    built = {}
    for name, svc in services().items():
        b = build_of(svc)
        if b and b[1].resolve() == HOOKMESH_DOCKERFILE.resolve():
            built[name] = svc
    expect(built, f"no service is built from {rel(HOOKMESH_DOCKERFILE)}")
    images = {svc.get("image") for svc in built.values()} - {None}
    return {n: s for n, s in services().items() if n in built or s.get("image") in images}


def hookmesh_command(svc: dict) -> list[str]:
    expect(svc.get("entrypoint") is None, "overrides the image's entrypoint (`hookmesh`)")
    return command_of(svc, dockerfile_cmd(HOOKMESH_DOCKERFILE))


def collector_service() -> str:
    found = [n for n, s in services().items() if re.search(r"opentelemetry-collector|otelcol", str(s.get("image", "")))]
    expect(len(found) == 1, f"expected one OpenTelemetry collector service (image otel/opentelemetry-collector*), found {found}")
    return found[0]


def component_type(name: str) -> str:
    return str(name).split("/", 1)[0]


def endpoint_host_port(endpoint: str, default_port: int | None = None) -> tuple[str | None, int | None]:
    """`host:port`, `scheme://host:port/path` or `[v6]:port` -> (host, port)."""
    s = str(endpoint)
    u = urlsplit(s if "://" in s else f"//{s}")
    try:
        port = u.port
    except ValueError:
        port = None
    return u.hostname, port if port is not None else default_port


def otlp_http_receivers() -> dict[str, tuple[str | None, int]]:
    """OTLP receivers used by a pipeline that speak HTTP: name -> (listen host, port)."""
    c = collector()
    used = {r for p in (c.get("service", {}).get("pipelines") or {}).values() for r in (p or {}).get("receivers", [])}
    out = {}
    for name, conf in (c.get("receivers") or {}).items():
        if component_type(name) != "otlp" or name not in used:
            continue
        protocols = (conf or {}).get("protocols") or {}
        if "http" in protocols:
            endpoint = (protocols["http"] or {}).get("endpoint")
            if endpoint is None:
                out[name] = (None, OTLP_HTTP_DEFAULT_PORT)
            else:
                out[name] = endpoint_host_port(endpoint, OTLP_HTTP_DEFAULT_PORT)
    return out


# --------------------------------------------------------------------------------------------
# Checks
# --------------------------------------------------------------------------------------------

CHECKS: list[tuple[str, Callable[[], None]]] = []


def check(name: str):
    def register(fn: Callable[[], None]) -> Callable[[], None]:
        CHECKS.append((name, fn))
        return fn

    return register


# ---- 1. the compose file on its own ----------------------------------------------------------


@check("compose: parses as YAML, only Compose-spec keys")
def _():
    doc = compose(detail=True)
    problems = [f"unknown top-level key `{k}`" for k in doc if k not in TOP_LEVEL_KEYS and not str(k).startswith("x-")]
    for name, svc in services().items():
        expect(re.fullmatch(r"[a-zA-Z0-9._-]+", name), f"invalid service name `{name}`")
        for k in svc:
            if k not in SERVICE_KEYS and not str(k).startswith("x-"):
                near = difflib.get_close_matches(k, SERVICE_KEYS, 1)
                problems.append(f"{name}: unknown key `{k}`" + (f" (did you mean `{near[0]}`?)" if near else ""))
        for k in svc.get("healthcheck") or {}:
            if k not in HEALTHCHECK_KEYS and not str(k).startswith("x-"):
                problems.append(f"{name}: unknown healthcheck key `{k}`")
    expect_none(problems)


@check("compose: every service has image or build (build context and Dockerfile exist)")
def _():
    problems = []
    built_images = {}
    for name, svc in services().items():
        if "image" not in svc and "build" not in svc:
            problems.append(f"{name}: neither `image` nor `build`")
        b = build_of(svc)
        if b:
            context, dockerfile = b
            if not context.is_dir():
                problems.append(f"{name}: build context {rel(context)} is not a directory")
            elif not dockerfile.is_file():
                problems.append(f"{name}: Dockerfile {rel(dockerfile)} does not exist")
            if svc.get("image"):
                built_images[str(svc["image"]).rsplit(":", 1)[0]] = str(svc["image"])
    # A service that runs an image another service builds must use the very tag that is built,
    # or compose pulls a `hookmesh:<other tag>` that no registry has.
    for name, svc in services().items():
        image = str(svc.get("image", ""))
        repo = image.rsplit(":", 1)[0] if ":" in image.rsplit("/", 1)[-1] else image
        if "build" not in svc and repo in built_images and image != built_images[repo]:
            problems.append(f"{name}: image `{image}` but the file builds `{built_images[repo]}`")
    expect_none(problems)


@check("compose: depends_on names existing services (service_healthy ones have a healthcheck)")
def _():
    svcs = services()
    problems = []
    for name, svc in svcs.items():
        for dep, spec in depends_on(svc).items():
            if dep not in svcs:
                near = difflib.get_close_matches(dep, svcs, 1)
                problems.append(f"{name}: depends on `{dep}`, no such service" + (f" (did you mean `{near[0]}`?)" if near else ""))
                continue
            if dep == name:
                problems.append(f"{name}: depends on itself")
            condition = spec.get("condition", "service_started")
            if condition == "service_healthy" and not (svcs[dep].get("healthcheck") or {}).get("test"):
                problems.append(f"{name}: waits for `{dep}` to be healthy, but `{dep}` has no healthcheck")
    expect_none(problems)


@check("compose: bind-mounted host paths exist in the repository, named volumes are declared")
def _():
    declared = set((compose().get("volumes") or {}).keys())
    problems, binds = [], 0
    for name, svc in services().items():
        for v in svc.get("volumes") or []:
            if isinstance(v, dict):
                kind, source = v.get("type"), v.get("source")
            else:
                source, sep, _ = str(v).partition(":")
                if not sep:
                    continue  # anonymous volume: a container path only
                kind = "bind" if source.startswith((".", "/", "~")) else "volume"
            if kind == "bind":
                binds += 1
                if not host_path(source).exists():
                    problems.append(f"{name}: bind mount source {source} does not exist ({host_path(source)})")
            elif kind == "volume" and source and source not in declared:
                problems.append(f"{name}: named volume `{source}` is not declared under top-level volumes")
    expect(binds, "no bind mounts found (the collector config at least is bind-mounted)")
    expect_none(problems)


def published_ports(svc: dict) -> list[tuple[str, list[int], list[int], str]]:
    """(host ip, host ports, container ports, protocol) of each published port entry."""
    out = []
    for p in svc.get("ports") or []:
        if isinstance(p, dict):
            if p.get("published") is None:
                continue
            host = _port_range(str(p["published"]))
            target = _port_range(str(p["target"]))
            out.append((p.get("host_ip", ""), host, target, p.get("protocol", "tcp")))
            continue
        spec, _, proto = str(p).partition("/")
        parts = spec.rsplit(":", 2)
        if len(parts) == 1:
            continue  # container port only: an ephemeral host port, never a conflict
        ip = parts[0].strip("[]") if len(parts) == 3 else ""
        if parts[-2] == "":
            continue  # "ip::container": ephemeral host port
        out.append((ip, _port_range(parts[-2]), _port_range(parts[-1]), proto or "tcp"))
    return out


def _port_range(s: str) -> list[int]:
    lo, _, hi = s.partition("-")
    return list(range(int(lo), int(hi or lo) + 1))


@check("compose: no host port is published twice (replicas included)")
def _():
    problems = []
    taken: dict[tuple[str, int, str], str] = {}
    for name, svc in services().items():
        n = replicas(svc)
        for ip, host, target, proto in published_ports(svc):
            if len(target) > 1 and len(host) != len(target):
                problems.append(f"{name}: host range {host[0]}-{host[-1]} and container range differ in size")
            if len(target) == 1 and len(host) < n:
                problems.append(
                    f"{name}: {n} replicas but only {len(host)} host port(s) {host[0]}-{host[-1]} for container port {target[0]}"
                )
            for port in host:
                for (oip, oport, oproto), owner in taken.items():
                    if oport == port and oproto == proto and (not ip or not oip or ip == oip):
                        problems.append(f"host port {port}/{proto} published by both {owner} and {name}")
                taken[(ip, port, proto)] = name
    expect_none(problems)


# ---- 2. the hookmesh services ----------------------------------------------------------------


@check("hookmesh services: only variables hookmesh reads (no misspelt HOOKMESH_* / OTEL_*)")
def _():
    settings = hookmesh_settings_vars()
    otel = telemetry_otel_vars()
    known_subcommands = subcommands()
    problems = []
    for name, svc in hookmesh_services().items():
        sub = hookmesh_command(svc)[:1]
        sub = sub[0] if sub else ""
        if sub not in known_subcommands:
            continue  # the stages check reports it
        if sub in ROLE_COMMANDS:
            known = settings | RUST_RUNTIME_VARS
        else:
            known = subcommand_vars(sub) | RUST_RUNTIME_VARS
        for var in env_of(svc):
            if var in known:
                continue
            if sub in ROLE_COMMANDS and var.startswith("OTEL_") and (var in otel or OTEL_STANDARD.fullmatch(var)):
                continue
            near = difflib.get_close_matches(var, known | (otel if sub in ROLE_COMMANDS else set()), 1, 0.8)
            hint = f" (did you mean {near[0]}?)" if near else ""
            problems.append(f"{name} (`hookmesh {sub}`): {var} is not read by hookmesh{hint}")
    expect_none(problems)


@check("hookmesh services: HOOKMESH_KAFKA / HOOKMESH_REDIS point at compose services")
def _():
    svcs = services()
    problems = []
    roles = {n: s for n, s in hookmesh_services().items() if (hookmesh_command(s)[:1] or [""])[0] in ROLE_COMMANDS}
    expect(roles, "no hookmesh service runs a stage or standalone")
    for name, svc in roles.items():
        env = env_of(svc)
        deps = depends_on(svc)
        single = hookmesh_command(svc)[0] in STAGES  # standalone falls back to in-memory backends
        targets = []
        kafka = env.get("HOOKMESH_KAFKA")
        if not kafka:
            if single:
                problems.append(f"{name}: no HOOKMESH_KAFKA (a single stage needs Kafka)")
        else:
            for server in kafka.split(","):
                host, port = endpoint_host_port(server.strip())
                targets.append(("HOOKMESH_KAFKA", server.strip(), host, port))
        redis = env.get("HOOKMESH_REDIS")
        if not redis:
            if single:
                problems.append(f"{name}: no HOOKMESH_REDIS (a single stage needs Redis)")
        else:
            u = urlsplit(redis)
            if u.scheme not in ("redis", "rediss"):
                problems.append(f"{name}: HOOKMESH_REDIS `{redis}` is not a redis:// URL")
            targets.append(("HOOKMESH_REDIS", redis, u.hostname, u.port or 6379))
        for var, value, host, port in targets:
            if host not in svcs:
                problems.append(f"{name}: {var}={value}: host `{host}` is not a service (services: {', '.join(svcs)})")
                continue
            if port is None:
                problems.append(f"{name}: {var}={value}: no port")
            if host not in deps:
                problems.append(f"{name}: {var} uses `{host}` but the service does not depend_on it")
            advertised = env_of(svcs[host]).get("KAFKA_ADVERTISED_LISTENERS")
            if var == "HOOKMESH_KAFKA" and advertised:
                listeners = {endpoint_host_port(l.split("://", 1)[-1]) for l in advertised.split(",")}
                if (host, port) not in listeners:
                    problems.append(f"{name}: {var}={value} is not among {host}'s KAFKA_ADVERTISED_LISTENERS ({advertised})")
    expect_none(problems)


@check("hookmesh services: OTEL_EXPORTER_OTLP_ENDPOINT is the collector's OTLP/HTTP receiver")
def _():
    coll = collector_service()
    receivers = otlp_http_receivers()
    expect(receivers, f"{rel(Path(ARGS.collector))}: no otlp receiver with the http protocol in a pipeline (hookmesh speaks OTLP/HTTP only)")
    problems = []
    for rname, (lhost, lport) in receivers.items():
        if lhost is None:
            problems.append(
                f"collector receiver {rname}: http has no endpoint; since collector 0.104 it defaults to "
                f"localhost:{lport}, unreachable from the other containers (set endpoint: 0.0.0.0:{lport})"
            )
        elif lhost in ("localhost", "127.0.0.1", "::1"):
            problems.append(f"collector receiver {rname}: http listens on {lhost}:{lport}, unreachable from the other containers")
    ports = {p for _, p in receivers.values()}
    exporting = 0
    for name, svc in hookmesh_services().items():
        if (hookmesh_command(svc)[:1] or [""])[0] not in ROLE_COMMANDS:
            continue
        env = env_of(svc)
        for var in ("OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "OTEL_EXPORTER_OTLP_METRICS_ENDPOINT"):
            value = env.get(var)
            if var == "OTEL_EXPORTER_OTLP_ENDPOINT":
                if not value:
                    problems.append(f"{name}: no OTEL_EXPORTER_OTLP_ENDPOINT (its traces and metrics go nowhere)")
                    continue
                exporting += 1
            elif not value:
                continue
            u = urlsplit(value)
            if u.scheme not in ("http", "https"):
                problems.append(f"{name}: {var}={value} is not an http(s) URL (hookmesh exports OTLP/HTTP)")
                continue
            port = u.port or (443 if u.scheme == "https" else 80)
            if u.hostname != coll:
                problems.append(f"{name}: {var}={value}: host `{u.hostname}` is not the collector service `{coll}`")
            elif port not in ports:
                problems.append(
                    f"{name}: {var}={value}: port {port}, but the collector's OTLP/HTTP receiver listens on {sorted(ports)}"
                )
    expect(exporting or problems, "no hookmesh role service sets OTEL_EXPORTER_OTLP_ENDPOINT")
    expect_none(problems)


@check("hookmesh services: published ports are ones the stage listens on, not on loopback")
def _():
    defaults = role_default_ports()
    problems = []
    for name, svc in hookmesh_services().items():
        cmd = hookmesh_command(svc)
        sub = (cmd[:1] or [""])[0]
        env = env_of(svc)
        if sub not in ROLE_COMMANDS:
            continue
        listen = {}
        for key, flag, var, default in (
            ("grpc", "--grpc-addr", "HOOKMESH_GRPC_ADDR", defaults.get(sub, (None, None))[0]),
            ("admin", "--admin-addr", "HOOKMESH_ADMIN_ADDR", defaults.get(sub, (None, None))[1]),
        ):
            value = env.get(var) or (f"127.0.0.1:{default}" if default else None)
            for i, arg in enumerate(cmd):
                if arg == flag and i + 1 < len(cmd):
                    value = cmd[i + 1]
                elif arg.startswith(flag + "="):
                    value = arg.split("=", 1)[1]
            if value:
                listen[endpoint_host_port(value)[1]] = (key, value)
        for _, _, targets, _ in published_ports(svc):
            for t in targets:
                if t not in listen:
                    known = ", ".join(f"{k} {v}" for k, v in listen.values())
                    problems.append(f"{name}: publishes container port {t}, but `hookmesh {sub}` listens on {known}")
                else:
                    host = endpoint_host_port(listen[t][1])[0]
                    if host in ("127.0.0.1", "localhost", "::1"):
                        problems.append(f"{name}: publishes {t}, but {listen[t][0]} listens on loopback ({listen[t][1]})")
    expect_none(problems)


# ---- 3. the collector config -----------------------------------------------------------------


@check("collector: every component of service.pipelines is defined")
def _():
    c = collector(detail=True)
    pipelines = (c.get("service") or {}).get("pipelines") or {}
    expect(pipelines, f"{rel(Path(ARGS.collector))}: no service.pipelines")
    connectors = set((c.get("connectors") or {}).keys())
    problems = []
    for section, allowed in (
        ("receivers", set((c.get("receivers") or {}).keys()) | connectors),
        ("processors", set((c.get("processors") or {}).keys())),
        ("exporters", set((c.get("exporters") or {}).keys()) | connectors),
    ):
        for pname, p in pipelines.items():
            names = (p or {}).get(section) or []
            if section != "processors" and not names:
                problems.append(f"pipeline {pname}: no {section}")
            for n in names:
                if n not in allowed:
                    near = difflib.get_close_matches(n, allowed, 1)
                    problems.append(
                        f"pipeline {pname}: {section[:-1]} `{n}` is not defined under {section}"
                        + (f" (did you mean `{near[0]}`?)" if near else "")
                    )
    for ext in (c.get("service") or {}).get("extensions") or []:
        if ext not in (c.get("extensions") or {}):
            problems.append(f"service.extensions: `{ext}` is not defined under extensions")
    expect_none(problems)


@check("collector: a traces and a metrics pipeline receive otlp")
def _():
    pipelines = (collector().get("service") or {}).get("pipelines") or {}
    problems = []
    for signal in ("traces", "metrics"):
        ps = {n: p or {} for n, p in pipelines.items() if component_type(n) == signal}
        if not ps:
            problems.append(f"no {signal} pipeline (pipelines: {', '.join(pipelines)})")
        elif not any(component_type(r) == "otlp" for p in ps.values() for r in p.get("receivers") or []):
            problems.append(f"no {signal} pipeline receives otlp ({ {n: p.get('receivers') for n, p in ps.items()} })")
    expect_none(problems)


@check("collector: the traces exporter sends to a compose service (the trace viewer)")
def _():
    c = collector()
    svcs = services()
    exporters = c.get("exporters") or {}
    pipelines = (c.get("service") or {}).get("pipelines") or {}
    problems, targets = [], []
    for pname, p in pipelines.items():
        if component_type(pname) != "traces":
            continue
        for e in (p or {}).get("exporters") or []:
            endpoint = (exporters.get(e) or {}).get("endpoint")
            if endpoint is None:
                continue  # debug, file, …: nothing to reach
            host, port = endpoint_host_port(endpoint)
            targets.append(f"{e} -> {endpoint}")
            if host not in svcs:
                problems.append(f"pipeline {pname}: exporter {e} sends to `{host}`, not a service (services: {', '.join(svcs)})")
            elif port is None and "://" not in str(endpoint):
                problems.append(f"pipeline {pname}: exporter {e} endpoint {endpoint} has no port")
    expect(targets or problems, "no traces pipeline exports to a network endpoint (traces reach no viewer)")
    expect_none(problems)


@check("collector: the collector service runs with the mounted config file")
def _():
    name = collector_service()
    svc = services()[name]
    cmd = command_of(svc, [])
    configs = [a.split("=", 1)[1] for a in cmd if a.startswith("--config=")]
    configs += [cmd[i + 1] for i, a in enumerate(cmd[:-1]) if a == "--config"]
    expect(configs, f"{name}: no --config in its command {cmd} (the image's default config would run)")
    mounts = {}
    for v in svc.get("volumes") or []:
        if isinstance(v, dict):
            mounts[v.get("target")] = v.get("source")
        else:
            parts = str(v).split(":")
            if len(parts) >= 2:
                mounts[parts[1]] = parts[0]
    problems = []
    for cfg in configs:
        if cfg.startswith(("env:", "yaml:", "http:", "https:")):
            continue
        source = mounts.get(cfg)
        if source is None:
            problems.append(f"{name}: --config={cfg}, but nothing is mounted at {cfg} (mounts: {mounts})")
        elif not host_path(source).is_file():
            problems.append(f"{name}: {cfg} is mounted from {source}, which is not a file")
        elif Path(ARGS.collector).resolve() == COLLECTOR.resolve() and host_path(source).resolve() != COLLECTOR.resolve():
            problems.append(f"{name}: mounts {source} as its config, not {rel(COLLECTOR)} (the file checked here)")
    expect_none(problems)


# ---- 4. the stages ---------------------------------------------------------------------------


@check("stages: ingest, router, renderer and dispatcher each run exactly once (or one standalone)")
def _():
    known = subcommands()
    problems = []
    runs: dict[str, list[str]] = {s: [] for s in STAGES}
    for name, svc in hookmesh_services().items():
        cmd = hookmesh_command(svc)
        sub = (cmd[:1] or [""])[0]
        if sub not in known:
            near = difflib.get_close_matches(sub, known, 1)
            problems.append(f"{name}: `hookmesh {sub}` is not a hookmesh subcommand" + (f" (did you mean `{near[0]}`?)" if near else ""))
        elif sub == "standalone":
            for s in STAGES:
                runs[s].append(f"{name} (standalone)")
        elif sub in STAGES:
            runs[sub].append(name)
    for stage, where in runs.items():
        if not where:
            problems.append(f"no service runs the {stage} stage")
        elif len(where) > 1:
            problems.append(f"the {stage} stage runs in several services: {', '.join(where)} (use deploy.replicas to scale one)")
    expect_none(problems)


# --------------------------------------------------------------------------------------------


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--compose", type=Path, default=COMPOSE, help=f"compose file (default {rel(COMPOSE)})")
    parser.add_argument("--collector", type=Path, default=COLLECTOR, help=f"collector config (default {rel(COLLECTOR)})")
    parser.add_argument("-k", help="run only checks whose name contains this text")
    parser.add_argument("-v", "--verbose", action="store_true", help="print tracebacks of failures")
    args = parser.parse_args()
    ARGS.compose, ARGS.collector = args.compose, args.collector
    print(f"compose wiring: {rel(args.compose)} + {rel(args.collector)} (PyYAML {yaml.__version__})")
    passed = failed = 0
    for name, fn in CHECKS:
        if args.k and args.k not in name:
            continue
        try:
            fn()
        except CheckFailed as e:
            failed += 1
            print(f"FAIL {name}: {e}")
        except Exception as e:  # a bug in a check, or a file of unexpected shape
            failed += 1
            print(f"FAIL {name}: {type(e).__name__}: {e}")
            if args.verbose:
                traceback.print_exc()
        else:
            passed += 1
            print(f"ok   {name}")
    print(f"{passed} passed, {failed} failed")
    return 1 if failed or not passed else 0


if __name__ == "__main__":
    sys.exit(main())
