"""deploy/ checked offline: every kustomize overlay renders and passes strict schema validation,
and the manifests, Dockerfiles and compose file keep what deploy/README.md promises."""

from __future__ import annotations

import functools
import json
import os
import re
import shutil
import subprocess
import tomllib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

from anvil_bundle_worker.settings import WorkerSettings
from anvil_common.settings import SHARED_FIELDS
from anvil_push_gateway.settings import GatewaySettings
from anvil_registry.settings import RegistrySettings

ROOT = Path(__file__).resolve().parent.parent
DEPLOY = ROOT / "deploy"
K8S = DEPLOY / "k8s"
OVERLAYS = ("dev", "prod")
# The Kubernetes release whose schemas kubernetes-validate checks against (kubectl here is 1.32).
KUBERNETES_VERSION = "1.32.0"
# kubernetes-validate carries no schema for custom resources: each one rendered is exempted
# from the schema check BY NAME here and checked by its own test below.
CUSTOM_RESOURCES = {("monitoring.coreos.com/v1", "ServiceMonitor")}
# Deployments that serve no HTTP (the bundle worker's job loop): no port, so no probes.
UNPROBED = {"anvil-bundle-worker-work"}
# Deployment -> (image, the settings that give its port).
SERVING = {
    "anvil-registry": ("anvil-registry", RegistrySettings),
    "anvil-bundle-worker-api": ("anvil-bundle-worker", WorkerSettings),
    "anvil-push-gateway": ("anvil-push-gateway", GatewaySettings),
}
GATEWAY = "anvil-push-gateway"
# anvil_push_gateway.__main__ gives uvicorn DRAIN_SECONDS + 10 to finish after SIGTERM.
UVICORN_EXTRA_SECONDS = 10
# The migrations Job's containers, in the order they run.
MIGRATION_IMAGES = ["anvil-registry", "anvil-bundle-worker", "anvil-push-gateway"]
# Secrets the manifests reference; deploy/README.md tells how to create each.
SECRETS = {"anvil-database", "anvil-instance-keys", "anvil-push-gateway-registry-token", "anvil-tls"}
RECOMMENDED_LABELS = ("name", "component", "part-of", "instance", "managed-by")
# Dockerfile -> (workspace member, module, default command, settings).
DOCKERFILES = {
    "registry": ("services/registry", "anvil_registry", "serve", RegistrySettings),
    "bundle-worker": ("services/bundle-worker", "anvil_bundle_worker", "api", WorkerSettings),
    "push-gateway": ("services/push-gateway", "anvil_push_gateway", "serve", GatewaySettings),
}
WORKSPACE = [
    "libs/anvil_wire",
    "libs/anvil_common",
    "services/registry",
    "services/bundle-worker",
    "services/push-gateway",
    "clients/cli",
    "clients/python-runtime",
]


def _require_kubectl() -> str:
    # Mirrors scripts/run_tests.py and Postgres: a skip on a developer's machine, a failure in CI.
    path = shutil.which("kubectl")
    if path is None:
        if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
            pytest.fail("kubectl is required under CI=true to render deploy/k8s, and it is not on the PATH")
        pytest.skip("kubectl not found on the PATH: the deploy/k8s overlays were not rendered")
    return path


@functools.cache
def _kustomize(kubectl: str, overlay: str) -> tuple[dict[str, Any], ...]:
    result = subprocess.run(
        [kubectl, "kustomize", str(K8S / "overlays" / overlay)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, f"kubectl kustomize overlays/{overlay} failed:\n{result.stderr}"
    return tuple(doc for doc in yaml.safe_load_all(result.stdout) if doc)


def render(overlay: str) -> list[dict[str, Any]]:
    return list(_kustomize(_require_kubectl(), overlay))


def of_kind(objects: list[dict[str, Any]], kind: str) -> dict[str, dict[str, Any]]:
    return {o["metadata"]["name"]: o for o in objects if o["kind"] == kind}


def pod_specs(objects: list[dict[str, Any]]) -> Iterator[tuple[str, dict[str, Any]]]:
    for obj in objects:
        if obj["kind"] in ("Deployment", "Job"):
            yield f"{obj['kind']}/{obj['metadata']['name']}", obj["spec"]["template"]["spec"]


def containers(spec: dict[str, Any]) -> list[dict[str, Any]]:
    return [*spec.get("initContainers", []), *spec["containers"]]


def settings(objects: list[dict[str, Any]]) -> dict[str, str]:
    (config,) = of_kind(objects, "ConfigMap").values()
    return dict(config["data"])


def selects(selector: dict[str, Any], labels: dict[str, str]) -> bool:
    """A LabelSelector (matchLabels, matchExpressions) against labels."""
    if any(labels.get(k) != v for k, v in selector.get("matchLabels", {}).items()):
        return False
    for expr in selector.get("matchExpressions", []):
        key, op, values = expr["key"], expr["operator"], expr.get("values", [])
        present = key in labels
        if (
            (op == "In" and labels.get(key) not in values)
            or (op == "NotIn" and labels.get(key) in values)
            or (op == "Exists" and not present)
            or (op == "DoesNotExist" and present)
        ):
            return False
    return True


def template_labels(deployment: dict[str, Any]) -> dict[str, str]:
    return deployment["spec"]["template"]["metadata"]["labels"]


# --- Kubernetes manifests ---------------------------------------------------------------------


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_overlay_renders_and_every_object_passes_strict_schema_validation(overlay):
    objects = render(overlay)
    errors = []
    for obj in objects:
        where = f"{obj['kind']}/{obj['metadata']['name']}"
        if (obj["apiVersion"], obj["kind"]) in CUSTOM_RESOURCES:
            continue  # checked by test_prod_service_monitor_has_its_required_fields
        try:
            kubernetes_validate.validate(obj, KUBERNETES_VERSION, strict=True)
        except kubernetes_validate.ValidationError as exc:
            path = "/".join(str(p) for p in exc.absolute_path)
            errors.append(f"{where}: {exc.message} at /{path}")
        except kubernetes_validate.SchemaNotFoundError:
            errors.append(f"{where}: no schema; a custom resource needs an entry in CUSTOM_RESOURCES")
    assert not errors, "\n".join(errors)
    kinds = {o["kind"] for o in objects}
    assert {"ConfigMap", "Deployment", "Service", "Job", "Ingress", "PodDisruptionBudget"} <= kinds


def test_prod_service_monitor_has_its_required_fields():
    assert not of_kind(render("dev"), "ServiceMonitor"), "the ServiceMonitor is optional: dev leaves it out"
    objects = render("prod")
    (monitor,) = of_kind(objects, "ServiceMonitor").values()
    assert monitor["apiVersion"] == "monitoring.coreos.com/v1"
    spec = monitor["spec"]
    assert set(spec) <= {"selector", "endpoints", "namespaceSelector", "jobLabel"}
    scraped = {
        name: svc
        for name, svc in of_kind(objects, "Service").items()
        if selects(spec["selector"], svc["metadata"]["labels"])
    }
    assert set(scraped) == {"anvil-registry", "anvil-bundle-worker", "anvil-push-gateway"}
    assert spec["endpoints"], "a ServiceMonitor without endpoints scrapes nothing"
    for endpoint in spec["endpoints"]:
        assert set(endpoint) <= {"port", "path", "interval", "scrapeTimeout", "scheme"}
        assert endpoint["path"] == "/metrics"
        for svc in scraped.values():
            assert endpoint["port"] in {p["name"] for p in svc["spec"]["ports"]}


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_every_container_runs_non_root_with_a_read_only_root_and_no_capabilities(overlay):
    for where, spec in pod_specs(render(overlay)):
        pod = spec.get("securityContext", {})
        assert spec.get("automountServiceAccountToken") is False, where
        # Service links would inject ANVIL_REGISTRY_PORT=tcp://... (Service anvil-registry) into
        # the ANVIL_REGISTRY_ settings' namespace.
        assert spec.get("enableServiceLinks") is False, where
        tmp_volumes = {v["name"] for v in spec.get("volumes", []) if "emptyDir" in v}
        for container in containers(spec):
            name = f"{where} container {container['name']}"
            ctx = {**pod, **container.get("securityContext", {})}
            assert ctx.get("runAsNonRoot") is True, name
            assert isinstance(ctx.get("runAsUser"), int), name
            assert ctx["runAsUser"] > 0, name
            assert ctx.get("readOnlyRootFilesystem") is True, name
            assert ctx.get("allowPrivilegeEscalation") is False, name
            assert ctx.get("capabilities", {}).get("drop") == ["ALL"], name
            assert not ctx.get("capabilities", {}).get("add"), name
            assert not ctx.get("privileged"), name
            assert ctx.get("seccompProfile", {}).get("type") == "RuntimeDefault", name
            mounts = {m["mountPath"]: m["name"] for m in container.get("volumeMounts", [])}
            assert mounts.get("/tmp") in tmp_volumes, f"{name}: /tmp is not an emptyDir"


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_serving_containers_have_probes_and_the_job_loop_is_the_named_exception(overlay):
    deployments = of_kind(render(overlay), "Deployment")
    assert set(deployments) >= UNPROBED, "UNPROBED names a Deployment that no longer exists"
    assert set(SERVING) | UNPROBED == set(deployments)
    for name, deployment in deployments.items():
        (container,) = deployment["spec"]["template"]["spec"]["containers"]
        if name in UNPROBED:
            # The job loop serves no HTTP: nothing to probe, and nothing listening to route to.
            assert "ports" not in container, name
            assert not {"livenessProbe", "readinessProbe", "startupProbe"} & set(container), name
            continue
        ports = {p["name"]: p["containerPort"] for p in container["ports"]}
        for probe, path in (
            ("startupProbe", "/livez"),
            ("livenessProbe", "/livez"),
            ("readinessProbe", "/readyz"),
        ):
            check = container[probe]["httpGet"]
            assert check["path"] == path, f"{name} {probe}"
            assert check["port"] in ports, f"{name} {probe} probes a port the container does not name"


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_every_container_has_requests_and_limits(overlay):
    for where, spec in pod_specs(render(overlay)):
        for container in containers(spec):
            resources = container.get("resources", {})
            for part in ("requests", "limits"):
                assert {"cpu", "memory"} <= set(resources.get(part, {})), (
                    f"{where} {container['name']} {part}"
                )


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_gateway_grace_period_exceeds_its_prestop_sleep_and_drain(overlay):
    objects = render(overlay)
    spec = of_kind(objects, "Deployment")[GATEWAY]["spec"]["template"]["spec"]
    (container,) = spec["containers"]
    command = container["lifecycle"]["preStop"]["exec"]["command"]
    assert command[0] == "sleep", command
    assert len(command) == 2, command
    sleep = float(command[1])
    assert sleep > 0
    env = {e["name"]: e.get("value") for e in container.get("env", [])}
    drain = float(
        env.get("ANVIL_PUSH_GATEWAY_DRAIN_SECONDS")
        or settings(objects).get("ANVIL_PUSH_GATEWAY_DRAIN_SECONDS")
        or GatewaySettings.model_fields["drain_seconds"].default
    )
    grace = spec["terminationGracePeriodSeconds"]
    assert grace > sleep + drain + UVICORN_EXTRA_SECONDS, (grace, sleep, drain)


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_no_secret_is_rendered_and_every_referenced_secret_is_documented(overlay):
    objects = render(overlay)
    for secret in of_kind(objects, "Secret").values():
        assert not secret.get("data"), secret["metadata"]["name"]
        assert not secret.get("stringData"), secret["metadata"]["name"]
    for kustomization in K8S.rglob("kustomization.yaml"):
        assert "secretGenerator" not in yaml.safe_load(kustomization.read_text()), kustomization
    referenced = set()
    for _, spec in pod_specs(objects):
        referenced |= {v["secret"]["secretName"] for v in spec.get("volumes", []) if "secret" in v}
        for container in containers(spec):
            for env in container.get("env", []):
                if "secretKeyRef" in env.get("valueFrom", {}):
                    referenced.add(env["valueFrom"]["secretKeyRef"]["name"])
    for ingress in of_kind(objects, "Ingress").values():
        referenced |= {tls["secretName"] for tls in ingress["spec"].get("tls", [])}
    assert referenced == SECRETS
    readme = (DEPLOY / "README.md").read_text()
    for name in SECRETS:
        assert f"secret generic {name}" in readme or f"secret tls {name}" in readme, name
    for key, value in settings(objects).items():
        assert not re.search(r"PASSWORD|SECRET|TOKEN$|DATABASE_URL", key), f"{key} belongs in a Secret"
        assert not re.search(r"://[^/@\s]+@", value), f"{key} carries credentials"


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_migrations_run_only_in_the_job_in_service_order(overlay):
    objects = render(overlay)
    for name, deployment in of_kind(objects, "Deployment").items():
        for container in containers(deployment["spec"]["template"]["spec"]):
            words = [*container.get("command", []), *container.get("args", [])]
            assert "migrate" not in words, f"Deployment/{name} runs migrations in every replica"
    assert settings(objects).get("ANVIL_REGISTRY_AUTO_MIGRATE", "false") == "false"
    (job,) = of_kind(objects, "Job").values()
    spec = job["spec"]["template"]["spec"]
    assert spec["restartPolicy"] == "Never"
    steps = containers(spec)
    assert [c["args"] for c in steps] == [["migrate"]] * len(MIGRATION_IMAGES)
    images = [c["image"].rsplit("/", 1)[-1].split(":")[0].split("@")[0] for c in steps]
    assert images == MIGRATION_IMAGES


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_services_pdbs_and_the_hpa_select_their_deployments(overlay):
    objects = render(overlay)
    deployments = of_kind(objects, "Deployment")
    for name, service in of_kind(objects, "Service").items():
        selector = {"matchLabels": service["spec"]["selector"]}
        matched = [d for d in deployments.values() if selects(selector, template_labels(d))]
        assert len(matched) == 1, f"Service/{name} selects {len(matched)} Deployments"
        (container,) = matched[0]["spec"]["template"]["spec"]["containers"]
        named = {p["name"] for p in container["ports"]}
        assert {p["targetPort"] for p in service["spec"]["ports"]} <= named, name
    budgets = of_kind(objects, "PodDisruptionBudget").values()
    for name, deployment in deployments.items():
        assert deployment["spec"]["selector"]["matchLabels"].items() <= template_labels(deployment).items()
        covering = [b for b in budgets if selects(b["spec"]["selector"], template_labels(deployment))]
        assert len(covering) == 1, f"Deployment/{name} has {len(covering)} PodDisruptionBudgets"
    for hpa in of_kind(objects, "HorizontalPodAutoscaler").values():
        target = hpa["spec"]["scaleTargetRef"]
        assert target["kind"] == "Deployment"
        assert target["name"] in deployments


def _unknown_settings(names: list[str]) -> list[str]:
    """The ``ANVIL_*`` names no service reads (a typo is silently ignored by the services)."""
    unknown = []
    for name in names:
        for cls in (RegistrySettings, WorkerSettings, GatewaySettings):
            prefix = cls.model_config["env_prefix"]
            if name.startswith(prefix) and name[len(prefix) :].lower() in cls.model_fields:
                break
        else:
            if name.removeprefix("ANVIL_").lower() not in SHARED_FIELDS:
                unknown.append(name)
    return unknown


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_every_setting_named_is_one_a_service_reads(overlay):
    objects = render(overlay)
    names = list(settings(objects))
    for _, spec in pod_specs(objects):
        names += [e["name"] for c in containers(spec) for e in c.get("env", [])]
    assert not _unknown_settings(names)
    compose = yaml.safe_load((DEPLOY / "compose.yaml").read_text())
    compose_names = [
        name for service in compose["services"].values() for name in service.get("environment", {})
    ]
    assert not _unknown_settings([n for n in compose_names if n.startswith("ANVIL_")])


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_ports_agree_with_the_services_settings(overlay):
    objects = render(overlay)
    config = settings(objects)
    for name, (image, settings_cls) in SERVING.items():
        port = settings_cls.model_fields["port"].default
        prefix = settings_cls.model_config["env_prefix"]
        (container,) = of_kind(objects, "Deployment")[name]["spec"]["template"]["spec"]["containers"]
        assert image in container["image"]
        assert [p["containerPort"] for p in container["ports"]] == [port], name
        assert config[f"{prefix}PORT"] == str(port)
        assert config[f"{prefix}HOST"] == "0.0.0.0"  # noqa: S104 - inside a pod


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_ingress_routes_each_host_and_the_websocket_path_with_long_timeouts(overlay):
    objects = render(overlay)
    services = of_kind(objects, "Service")
    (ingress,) = of_kind(objects, "Ingress").values()
    assert ingress["spec"]["ingressClassName"] == "nginx"
    annotations = ingress["metadata"]["annotations"]
    for name in ("proxy-read-timeout", "proxy-send-timeout"):
        seconds = int(annotations[f"nginx.ingress.kubernetes.io/{name}"])
        assert seconds >= 3600, f"{name}: WebSocket sessions would be cut after {seconds}s"
    routes: dict[str, str] = {}
    for rule in ingress["spec"]["rules"]:
        for path in rule["http"]["paths"]:
            backend = path["backend"]["service"]
            assert backend["port"]["name"] in {p["name"] for p in services[backend["name"]]["spec"]["ports"]}
            assert path["path"] != "/", "routing / would expose /metrics, /livez and /readyz"
            routes[f"{rule['host']}{path['path']}"] = backend["name"]
    stream = [backend for route, backend in routes.items() if route.endswith("/v1/stream")]
    assert stream == [GATEWAY]
    assert set(routes.values()) == {"anvil-registry", "anvil-bundle-worker", GATEWAY}
    hosts = {rule["host"] for rule in ingress["spec"]["rules"]}
    assert {h for tls in ingress["spec"]["tls"] for h in tls["hosts"]} == hosts
    public = {v.split("://", 1)[1] for k, v in settings(objects).items() if k.endswith("PUBLIC_URL")}
    assert public <= hosts, "a public URL in the ConfigMap names a host the Ingress does not serve"


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_every_object_and_pod_carries_the_recommended_labels(overlay):
    for obj in render(overlay):
        labeled = [obj["metadata"]]
        if obj["kind"] in ("Deployment", "Job"):
            labeled.append(obj["spec"]["template"]["metadata"])
        for meta in labeled:
            labels = meta.get("labels", {})
            missing = [k for k in RECOMMENDED_LABELS if f"app.kubernetes.io/{k}" not in labels]
            assert not missing, f"{obj['kind']}/{obj['metadata']['name']} lacks {missing}"
            assert labels["app.kubernetes.io/part-of"] == "anvil"


def test_dev_runs_one_replica_of_everything():
    objects = render("dev")
    assert not of_kind(objects, "HorizontalPodAutoscaler")
    for name, deployment in of_kind(objects, "Deployment").items():
        assert deployment["spec"].get("replicas", 1) == 1, name


def test_prod_runs_two_replicas_or_more_autoscales_the_gateway_and_pins_images():
    objects = render("prod")
    autoscaled = {
        hpa["spec"]["scaleTargetRef"]["name"]: hpa["spec"]
        for hpa in of_kind(objects, "HorizontalPodAutoscaler").values()
    }
    assert set(autoscaled) == {GATEWAY}
    assert "replicas" not in of_kind(objects, "Deployment")[GATEWAY]["spec"], "the HPA owns the replicas"
    for name, deployment in of_kind(objects, "Deployment").items():
        if name in autoscaled:
            assert autoscaled[name]["minReplicas"] >= 2
            assert autoscaled[name]["maxReplicas"] > autoscaled[name]["minReplicas"]
        else:
            assert deployment["spec"]["replicas"] >= 2, name
    for where, spec in pod_specs(objects):
        for container in containers(spec):
            image = container["image"]
            assert "/" in image, f"{where}: {image} was not mapped to a registry by the overlay"
            assert re.search(r"(:[\w.-]+|@sha256:[0-9a-f]{64})$", image), f"{where}: {image} is not pinned"
            assert not image.endswith(":latest"), where


# --- Dockerfiles ------------------------------------------------------------------------------


def _instructions(path: Path) -> list[tuple[str, str]]:
    text = re.sub(r"\\\n", " ", path.read_text())
    lines = [line.strip() for line in text.splitlines()]
    return [
        (line.split(None, 1)[0].upper(), line.split(None, 1)[1] if " " in line else "")
        for line in lines
        if line and not line.startswith("#")
    ]


def _stages(instructions: list[tuple[str, str]]) -> list[list[tuple[str, str]]]:
    stages: list[list[tuple[str, str]]] = []
    for instruction in instructions:
        if instruction[0] == "FROM":
            stages.append([])
        if stages:
            stages[-1].append(instruction)
    return stages


def _workspace_closure(member: str) -> set[str]:
    """``member`` and every workspace member it depends on, transitively."""
    by_name = {
        tomllib.loads((ROOT / m / "pyproject.toml").read_text())["project"]["name"]: m for m in WORKSPACE
    }
    todo, seen = [member], set()
    while todo:
        current = todo.pop()
        seen.add(current)
        deps = tomllib.loads((ROOT / current / "pyproject.toml").read_text())["project"]["dependencies"]
        for dep in deps:
            name = re.split(r"[\s\[<>=!~;]", dep, maxsplit=1)[0]
            if name in by_name and by_name[name] not in seen:
                todo.append(by_name[name])
    return seen


@pytest.mark.parametrize("service", sorted(DOCKERFILES))
def test_dockerfile_builds_a_small_non_root_image_of_its_own_members(service):
    member, module, command, settings_cls = DOCKERFILES[service]
    dockerfile = DEPLOY / "docker" / f"{service}.Dockerfile"
    instructions = _instructions(dockerfile)
    args = dict(
        a.split("=", 1) for kind, a in instructions if kind == "ARG" and "=" in a and not a.startswith("--")
    )
    stages = _stages(instructions)
    assert len(stages) >= 2, "multi-stage: wheels are built apart from the final image"
    for stage in stages:
        base = re.sub(r"\$\{(\w+)\}", lambda m: args[m.group(1)], stage[0][1].split(" AS ")[0].strip())
        assert re.fullmatch(r"python:3\.11(\.\d+)?-slim(-\w+)?(@sha256:[0-9a-f]{64})?", base), base
    final = stages[-1]
    final_text = "\n".join(f"{kind} {a}" for kind, a in final)

    users = [a for kind, a in final if kind == "USER"]
    assert users, "a USER"
    assert re.fullmatch(r"[1-9]\d*(:\d+)?", users[-1]), "a numeric non-root USER"
    env = " ".join(a for kind, a in final if kind == "ENV")
    assert "PYTHONDONTWRITEBYTECODE=1" in env
    assert "PYTHONUNBUFFERED=1" in env
    assert [json.loads(a) for kind, a in final if kind == "ENTRYPOINT"] == [["python", "-m", module]]
    assert [json.loads(a) for kind, a in final if kind == "CMD"] == [[command]]
    assert [a for kind, a in final if kind == "EXPOSE"] == [str(settings_cls.model_fields["port"].default)]
    assert not re.search(r"\b(gcc|g\+\+|build-essential|clang)\b", final_text), "no compiler in the image"
    assert not [a for kind, a in final if kind in ("COPY", "ADD") and "--from=" not in a], (
        "the final stage takes nothing from the build context, only the wheels"
    )

    pips = [a for kind, a in instructions if kind == "RUN" and re.search(r"\bpip (wheel|install)\b", a)]
    assert any("pip wheel" in run for run in pips)
    for run in pips:
        assert re.search(r"-c\s+\S*constraints\.txt", run), f"pip without -c constraints.txt: {run}"
        assert "://" not in run, run
        assert "index-url" not in run, run

    copied = set()
    for kind, a in instructions:
        if kind in ("COPY", "ADD") and "--from=" not in a:
            sources = [s for s in a.split()[:-1] if not s.startswith("--")]
            copied |= {s.rstrip("/") for s in sources}
    expected = _workspace_closure(member)
    assert {member, "libs/anvil_wire"} <= expected
    assert copied == expected | {"constraints.txt"}

    ignore = (DEPLOY / "docker" / f"{service}.Dockerfile.dockerignore").read_text().splitlines()
    assert "*" in ignore, "an allow-list: everything is left out of the context first"
    allowed = {line[1:].rstrip("/") for line in ignore if line.startswith("!")}
    assert allowed == expected | {"constraints.txt"}


# --- compose ----------------------------------------------------------------------------------


def test_compose_stack_migrates_first_and_keeps_secrets_out_of_the_file():
    compose = yaml.safe_load((DEPLOY / "compose.yaml").read_text())
    services = compose["services"]
    for spec in compose["secrets"].values():
        assert spec["file"].startswith("./secrets/"), spec
    for name, service in services.items():
        for key, value in service.get("environment", {}).items():
            assert key.endswith("_FILE") or not re.search(r"PASSWORD|SECRET|TOKEN$|DATABASE_URL", key), key
            assert not re.search(r"://[^/@\s]+@", str(value)), f"{name}: {key} carries credentials"
        assert all(f.startswith("./secrets/") for f in service.get("env_file", [])), name
    postgres = services.pop("postgres")
    assert postgres["image"].startswith("postgres:16")
    assert "pg_isready" in " ".join(postgres["healthcheck"]["test"])
    migrations = {name for name in services if name.startswith("migrate-")}
    assert migrations == {"migrate-registry", "migrate-bundle-worker", "migrate-push-gateway"}
    for name, service in services.items():
        assert service.get("read_only") is True, name
        assert "/tmp" in service["tmpfs"], name
        if name in migrations:
            assert service["command"] == ["migrate"], name
            assert service["restart"] == "no", name
            assert service["depends_on"]["postgres"]["condition"] == "service_healthy", name
            continue
        assert "migrate" not in service["command"], name
        own = f"migrate-{name.removesuffix('-api').removesuffix('-work')}"
        assert service["depends_on"][own]["condition"] == "service_completed_successfully", name
        if name == "bundle-worker-work":
            assert "healthcheck" not in service, "the job loop serves no HTTP to check"
        else:
            assert "/readyz" in " ".join(service["healthcheck"]["test"]), name
