"""A typed httpx client over the bundle worker's /v1 API (exports, imports, jobs, plans, bundles,
peers), and how the CLI waits for the worker's jobs.

The worker is a second service with its own URL (the context's ``worker_url``); it takes the same
token as the registry (a token whose audience includes ``anvil-bundle-worker``).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx

from .client import JSON, HttpClient, problem_error
from .errors import ApiError, Failure
from .progress import Steps

__all__ = ["WorkerClient", "follow_job", "job_failure", "BUNDLE_MEDIA_TYPE"]

BUNDLE_MEDIA_TYPE = "application/vnd.anvil.bundle"
FINISHED = ("succeeded", "failed")


def _seg(value: str) -> str:
    return quote(value, safe="")


class WorkerClient(HttpClient):
    """The bundle worker's /v1 API."""

    service = "bundle worker"

    # -- exports, jobs, bundles ---------------------------------------------------------------

    def create_export(self, body: JSON, *, idempotency_key: str) -> JSON:
        job: JSON = self.json("POST", "/v1/exports", json=body, headers={"Idempotency-Key": idempotency_key})
        return job

    def get_job(self, job_id: str) -> JSON:
        job: JSON = self.json("GET", f"/v1/jobs/{_seg(job_id)}")
        return job

    def download_bundle(self, digest: str) -> AbstractContextManager[httpx.Response]:
        """``GET /v1/bundles/{digest}``, streamed: read it with ``iter_chunks``."""
        return self.stream("GET", f"/v1/bundles/{_seg(digest)}", headers={"Accept": BUNDLE_MEDIA_TYPE})

    # -- imports and plans ----------------------------------------------------------------------

    def create_import(
        self,
        chunks: Iterable[bytes],
        *,
        size: int,
        organisation: str,
        strategy: str,
        overrides: list[str],
        idempotency_key: str,
    ) -> JSON:
        """Upload a bundle file (streamed, ``size`` bytes) for planning; answers the import job."""
        params: dict[str, Any] = {"organisation": organisation, "strategy": strategy, "override": overrides}
        headers = {
            "Content-Type": BUNDLE_MEDIA_TYPE,
            "Content-Length": str(size),
            "Idempotency-Key": idempotency_key,
        }
        job: JSON = self.json("POST", "/v1/imports", params=params, content=chunks, headers=headers)
        return job

    def get_plan(self, plan_id: str) -> JSON:
        plan: JSON = self.json("GET", f"/v1/plans/{_seg(plan_id)}")
        return plan

    def apply_plan(self, plan_id: str) -> JSON:
        plan: JSON = self.json("POST", f"/v1/plans/{_seg(plan_id)}/apply")
        return plan

    def reject_plan(self, plan_id: str) -> JSON:
        plan: JSON = self.json("POST", f"/v1/plans/{_seg(plan_id)}/reject")
        return plan

    # -- peers ------------------------------------------------------------------------------------

    @staticmethod
    def peer_path(organisation: str, name: str) -> str:
        return f"/v1/peers/{_seg(organisation)}/{_seg(name)}"

    def list_peers(self, organisation: str, *, limit: int | None = None) -> list[JSON]:
        """The organisation's peers (a paged list, or a plain array)."""
        body = self.json("GET", "/v1/peers", params={"organisation": organisation})
        if isinstance(body, dict) and "items" in body:
            if body.get("next_page_token"):
                return self.items("/v1/peers", limit=limit, organisation=organisation)
            body = body["items"]
        if not isinstance(body, list):
            raise Failure("GET /v1/peers answered something that is not a list of peers")
        return body if limit is None else body[:limit]

    def create_peer(self, body: JSON) -> JSON:
        peer: JSON = self.json("POST", "/v1/peers", json=body)
        return peer

    def get_peer(self, organisation: str, name: str) -> JSON:
        peer: JSON = self.json("GET", self.peer_path(organisation, name))
        return peer

    def update_peer(self, organisation: str, name: str, changes: JSON) -> JSON:
        peer: JSON = self.json("PATCH", self.peer_path(organisation, name), json=changes)
        return peer

    def delete_peer(self, organisation: str, name: str) -> JSON | None:
        response = self.send("DELETE", self.peer_path(organisation, name))
        if not response.content:
            return None
        try:
            body: JSON = response.json()
        except ValueError:
            return None
        return body

    def refresh_peer_keys(self, organisation: str, name: str) -> JSON:
        peer: JSON = self.json("POST", f"{self.peer_path(organisation, name)}/refresh-keys")
        return peer

    def push(self, organisation: str, name: str, body: JSON, *, idempotency_key: str) -> JSON:
        job: JSON = self.json(
            "POST",
            f"{self.peer_path(organisation, name)}/push",
            json=body,
            headers={"Idempotency-Key": idempotency_key},
        )
        return job


def job_failure(job: JSON) -> ApiError | Failure:
    """A failed job's recorded problem, as the one-line error it ends the command with."""
    found = problem_error(job.get("error"), 500)
    if found is not None:
        return found
    return Failure(f"{job.get('kind', 'the')} job {job.get('id')} failed without saying why")


def _describe(job: JSON, what: str) -> str:
    status = str(job.get("status", "?"))
    attempts, most = job.get("attempts") or 0, job.get("max_attempts") or 0
    retry = f" (attempt {attempts + 1} of {most})" if job.get("error") and status == "queued" else ""
    return f"{what}: {status}{retry}"


def follow_job(
    worker: WorkerClient,
    job: JSON,
    *,
    steps: Steps,
    what: str,
    timeout: float,
    sleep: Callable[[float], None] = time.sleep,
) -> JSON:
    """Poll a job until it succeeds (its final state is returned) or fails (its problem is raised).

    Polls quickly at first, then at most once a second; gives up after ``timeout`` seconds with a
    Failure naming the job, which goes on running in the worker.
    """
    steps.step(_describe(job, what))
    deadline = time.monotonic() + timeout
    delay = 0.05
    while job.get("status") not in FINISHED:
        if time.monotonic() >= deadline:
            raise Failure(
                f"{what}: job {job.get('id')} is still {job.get('status')} after {timeout:g} s; "
                f"it goes on in the worker (GET /v1/jobs/{job.get('id')}); raise --timeout to wait longer"
            )
        sleep(delay)
        delay = min(delay * 1.5, 1.0)
        job = worker.get_job(str(job["id"]))
        steps.status(_describe(job, what))
    if job["status"] == "failed":
        raise job_failure(job)
    return job


def file_chunks(path: Path, steps: Steps, size: int = 256 * 1024) -> Iterator[bytes]:
    """A file's bytes in chunks, advancing the progress as they are sent."""
    try:
        with path.open("rb") as f:
            while chunk := f.read(size):
                steps.advance(len(chunk))
                yield chunk
    except OSError as exc:
        raise Failure(f"cannot read {path}: {exc.strerror or exc}") from exc
