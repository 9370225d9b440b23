"""Repository-wide test setup (pytest loads this for every suite under the repository root).

httpx builds a fresh TLS context, loading the whole CA bundle (~50 ms of CPU), for every client
it creates, even one that only ever talks plain http to loopback; the suites create thousands
(a client per CLI command, per readiness poll, per fixture). Within the test process the
default context (verify=True, no client certificate) is built once and shared: the same
settings, the same verification, a fraction of the CPU. Service processes started by tests are
not affected.
"""

from __future__ import annotations

import functools
import ssl
from typing import Any

import httpx._transports.default as _httpx_default

_create = _httpx_default.create_ssl_context


@functools.cache
def _default_context(trust_env: bool) -> ssl.SSLContext:
    return _create(verify=True, cert=None, trust_env=trust_env)


def _create_ssl_context(verify: Any = True, cert: Any = None, trust_env: bool = True) -> ssl.SSLContext:
    if verify is True and cert is None:
        return _default_context(trust_env)
    return _create(verify=verify, cert=cert, trust_env=trust_env)


_httpx_default.create_ssl_context = _create_ssl_context  # type: ignore[assignment]
