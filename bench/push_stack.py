"""The services of the push benchmark: the registry (an Anvil instance) seeded and published to
through its API, and push gateways started as real processes."""

from __future__ import annotations

import contextlib
import json
import random
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
from harness import BENCH, free_port
from push_procs import CLIENT_CPU, SERVER_CPU, pin

from anvil_wire import public_keys_from_jwks
from anvil_wire.push import Snapshot, encode, make_delta, manifest_digest
from anvil_wire.revisions import verify_revision

ROOT = BENCH.parent
sys.path.insert(0, str(ROOT / "tests"))

from anvil_instances import Instance  # noqa: E402

ORG, PROJECT = "bench", "push"
ENVIRONMENTS = ("fanout", "apply", "bare")
GATEWAY_SCOPES = ["config:read", "events:read", "projects:read", "revisions:read"]


def metrics(url: str) -> dict[str, float]:
    """The gateway's unlabelled Prometheus samples."""
    text = httpx.get(url + "/metrics", timeout=30).text
    return {m[1]: float(m[2]) for m in re.finditer(r"^(anvil_push_\w+) (\S+)$", text, re.M)}


@dataclass
class Environment:
    name: str
    id: str = ""
    revision: int = 0
    serves: tuple[str, int] = ("", 0)


@dataclass
class Stack:
    """The registry instance, what the benchmark seeded in it, and the gateways it started."""

    instance: Instance
    log_dir: Path
    http: httpx.Client
    environments: dict[str, Environment] = field(default_factory=dict)
    jwks: dict[str, Any] = field(default_factory=dict)
    gateway_token: str = ""
    client_tokens: dict[str, str] = field(default_factory=dict)
    event_cursor: int = 0

    @classmethod
    @contextlib.contextmanager
    def start(cls, root: Path) -> Iterator[Stack]:
        # The bundle worker the instance also starts is idle here (a long poll interval).
        with Instance.start(root, "pushbench", ANVIL_BUNDLE_WORKER_POLL_SECONDS="60") as instance:
            for process in instance.processes:
                pin(process.popen.pid, CLIENT_CPU)
            with instance.client("registry") as http:
                yield cls(instance, root, http)

    @property
    def registry_pid(self) -> int:
        return next(p.popen.pid for p in self.instance.processes if p.name == "registry")

    def _post(self, path: str, body: dict[str, Any], headers: dict[str, str] | None = None) -> Any:
        response = self.http.post("/v1" + path, json=body, headers=headers)
        if response.status_code not in (200, 201):
            raise RuntimeError(f"POST {path}: {response.status_code} {response.text[:300]}")
        return response.json()

    def seed(self, large_bytes: int) -> None:
        """Prompts ``small`` and ``large`` (two versions each) and the environments, each serving small@1."""
        base = f"/orgs/{ORG}/projects/{PROJECT}"
        self._post("/orgs", {"slug": ORG, "name": ORG})
        self._post(f"/orgs/{ORG}/projects", {"slug": PROJECT, "name": PROJECT})
        rng = random.Random(4)
        words = ["alpha", "bravo", "charlie", "delta", "echo", "foxtrot", "golf", "hotel", "india"]
        filler = " ".join(rng.choice(words) for _ in range(large_bytes // 5))[:large_bytes]
        for name, text in (("small", "Hello, reader."), ("large", filler)):
            self._post(f"{base}/prompts", {"name": name})
            for version in (1, 2):
                content = {"template": f"{text} (v{version})", "variables": {}}
                self._post(f"{base}/prompts/{name}/versions", {"content": content, "message": ""})
        for name in ENVIRONMENTS:
            self._post(f"{base}/environments", {"name": name})
            env = self.environments[name] = Environment(name)
            env.id = self.http.get(f"/v1{base}/environments/{name}").json()["id"]
            self.publish(name, "small")
            limits = {"org": ORG, "project": PROJECT, "environment": name}
            token = {"kind": "client", "name": f"bench-{name}", "scopes": ["config:read"], **limits}
            self.client_tokens[name] = self._post("/tokens", token)["token"]
        self.gateway_token = self._post(
            "/tokens", {"kind": "service", "name": "push-gateway", "scopes": GATEWAY_SCOPES}
        )["token"]
        self.jwks = self.http.get("/.well-known/jwks.json").json()

    def publish(self, environment: str, prompt: str) -> int:
        """Publish ``prompt`` alone into ``environment`` (not the version it serves): a new revision."""
        env = self.environments[environment]
        version = 2 if env.serves == (prompt, 1) else 1
        path = f"/orgs/{ORG}/projects/{PROJECT}/environments/{environment}/revisions"
        body = {"prompts": {prompt: version}, "replace": True}
        # The environment's ETag is "rev-<current revision>" (api.md section 4.2): no extra read.
        number = int(self._post(path, body, {"If-Match": f'"rev-{env.revision}"'})["number"])
        if number != env.revision + 1:
            raise RuntimeError(f"{environment}: published revision {number} after {env.revision}")
        env.revision, env.serves = number, (prompt, version)
        return number

    def event_time(self, environment: str, number: int) -> float:
        """``created_at`` of the registry's ``revision.created`` event of that revision (epoch seconds)."""
        while True:
            page = self.http.get("/v1/events", params={"after": self.event_cursor, "limit": 1000}).json()
            for event in page["events"]:
                payload = event["payload"]
                if (
                    event["kind"] == "revision.created"
                    and payload["environment"]["name"] == environment
                    and payload["revision"] == number
                ):
                    self.event_cursor = event["id"]
                    return datetime.fromisoformat(event["created_at"].replace("Z", "+00:00")).timestamp()
            if not page["events"]:
                raise RuntimeError(f"no revision.created event for {environment} revision {number}")
            self.event_cursor = page["next_after"]

    def document(self, environment: str, number: int) -> dict[str, Any]:
        path = f"/v1/orgs/{ORG}/projects/{PROJECT}/environments/{environment}/revisions/{number}/document"
        document: dict[str, Any] = json.loads(self.http.get(path).content)
        return document

    def frame(self, environment: str, number: int, base: int | None = None) -> str:
        """Revision ``number`` as the gateway encodes it (channels.py): a ``snapshot``, or with
        ``base`` the ``delta`` from that revision."""
        env, document = self.environments[environment], self.document(environment, number)
        if base is None:
            snapshot = Snapshot(
                environment_id=env.id,
                revision=number,
                manifest_digest=manifest_digest(document["manifest"]),
                document=document,
                prompt_set=None,
            )
            return encode(snapshot).decode()
        keys = public_keys_from_jwks(self.jwks)
        old = verify_revision(self.document(environment, base), keys, environment_id=env.id)
        new = verify_revision(document, keys, environment_id=env.id)
        delta = make_delta(
            old.contents,
            base,
            sorted(old.manifest.prompts),
            document,
            new.manifest,
            environment_id=env.id,
            prompt_set=None,
        )
        return encode(delta).decode()

    def client_config(self, mode: str, port: int, environment: str, n: int, *, token: bool) -> dict[str, Any]:
        env = self.environments[environment]
        return {
            "mode": mode,
            "host": "127.0.0.1",
            "port": port,
            "path": "/v1/stream",
            "n": n,
            "sources": 8,
            "concurrency": 200,
            "token": self.client_tokens[environment] if token else None,
            "subscription": {"organisation": ORG, "project": PROJECT, "environment": environment},
            "environment_id": env.id,
            "jwks": self.jwks,
        }


class Gateway:
    """``python -m anvil_push_gateway serve`` with its own database (schema or SQLite file)."""

    def __init__(self, stack: Stack, name: str, registry_url: str, max_connections: int) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        data_dir = stack.log_dir / f"gateway-{name}"
        # The gateway's own logging defaults (JSON), not the instance's plain text for tests.
        self.env = {k: v for k, v in stack.instance.env().items() if k != "ANVIL_LOG_JSON"} | {
            "ANVIL_PUSH_GATEWAY_HOST": "127.0.0.1",
            "ANVIL_PUSH_GATEWAY_PORT": str(self.port),
            "ANVIL_PUSH_GATEWAY_DATA_DIR": str(data_dir),
            "ANVIL_PUSH_GATEWAY_DATABASE_SCHEMA": f"push_gateway_{name.replace('-', '_')}",
            "ANVIL_PUSH_GATEWAY_REGISTRY_URL": registry_url,
            "ANVIL_PUSH_GATEWAY_REGISTRY_PUBLIC_URL": stack.instance.registry_url,
            "ANVIL_PUSH_GATEWAY_REGISTRY_TOKEN": stack.gateway_token,
            "ANVIL_PUSH_GATEWAY_REPLICA": f"bench-{name}",
            # One client token per environment here; the default (100 per token) is per replica.
            "ANVIL_PUSH_GATEWAY_MAX_CONNECTIONS_PER_TOKEN": str(max_connections),
            "ANVIL_PUSH_GATEWAY_DRAIN_SECONDS": "0",
        }
        command = [sys.executable, "-m", "anvil_push_gateway"]
        subprocess.run([*command, "migrate"], env=self.env, check=True, capture_output=True, timeout=120)
        self._log = (stack.log_dir / f"gateway-{name}.log").open("wb")
        self.process = subprocess.Popen(
            [*command, "serve"], env=self.env, stdout=self._log, stderr=subprocess.STDOUT
        )
        pin(self.process.pid, SERVER_CPU)
        self._wait_ready()
        self.last: dict[str, float] = metrics(self.url)

    @property
    def pid(self) -> int:
        return self.process.pid

    def _wait_ready(self) -> None:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"gateway exited ({self.process.returncode}); see {self._log.name}")
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(self.url + "/readyz", timeout=2).status_code == 200:
                    return
            time.sleep(0.1)
        raise RuntimeError(f"gateway not ready after 60 s; see {self._log.name}")

    def scrape(self) -> dict[str, float]:
        """The metrics now, with ``propagation`` (this scrape's increase of the propagation sum)."""
        now = metrics(self.url)
        key = "anvil_push_propagation_seconds_sum"
        now["propagation"] = now.get(key, 0.0) - self.last.get(key, 0.0)
        self.last = now
        return now

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self._log.close()
