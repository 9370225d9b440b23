"""The package as an app depends on it: minimal dependencies, a small public API, typed, documented,
and silent unless the app configures logging."""

from __future__ import annotations

import dataclasses
import inspect
import json
import logging
import subprocess
import sys
import tomllib
from pathlib import Path
from typing import Any

import pytest

import anvil_runtime

PACKAGE_ROOT = Path(__file__).resolve().parents[1]
EXPECTED_ALL = [
    "AnvilClient",
    "AnvilError",
    "AsyncAnvilClient",
    "ClientState",
    "ConfigurationError",
    "NotReadyError",
    "Prompt",
    "PromptNotFoundError",
    "RenderError",
    "__version__",
]
# Heavy server-side packages an app must never get by depending on the SDK.
FORBIDDEN = ["fastapi", "sqlalchemy", "anvil_common", "pydantic", "starlette", "uvicorn"]


def project() -> dict[str, Any]:
    with (PACKAGE_ROOT / "pyproject.toml").open("rb") as handle:
        data: dict[str, Any] = tomllib.load(handle)["project"]
    return data


def test_declared_dependencies_are_exactly_the_minimal_three() -> None:
    assert project()["dependencies"] == ["anvil-wire", "httpx>=0.27", "websockets>=13"]


def test_distribution_is_anvil_runtime_with_its_version() -> None:
    meta = project()
    assert meta["name"] == "anvil-runtime"
    assert meta["version"] == anvil_runtime.__version__


def run_python(code: str, cwd: Path) -> Any:
    """Run ``code`` in a fresh interpreter (outside the repository) and return the JSON it prints."""
    result = subprocess.run(
        [sys.executable, "-I", "-c", code], capture_output=True, text=True, cwd=cwd, timeout=60, check=False
    )
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


IMPORT_PROBE = """
import json, logging, sys
root_before = (list(logging.getLogger().handlers), logging.getLogger().level)
import anvil_runtime
root = logging.getLogger()
sdk = logging.getLogger("anvil_runtime")
print(json.dumps({
    "modules": sorted(sys.modules),
    "root_unchanged": (list(root.handlers), root.level) == root_before and not root.handlers,
    "root_level": root.level,
    "sdk_handlers": [type(h).__name__ for h in sdk.handlers],
    "sdk_level": sdk.level,
    "sdk_propagates": sdk.propagate,
}))
"""


@pytest.fixture(scope="module")
def fresh_import(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    probe: dict[str, Any] = run_python(IMPORT_PROBE, tmp_path_factory.mktemp("fresh"))
    return probe


def test_import_pulls_in_nothing_of_the_server_side(fresh_import: dict[str, Any]) -> None:
    loaded = {name.split(".")[0] for name in fresh_import["modules"]}
    assert [name for name in FORBIDDEN if name in loaded] == []
    assert "anvil_runtime" in loaded


def test_import_does_not_configure_the_root_logger(fresh_import: dict[str, Any]) -> None:
    assert fresh_import["root_unchanged"] is True
    assert fresh_import["root_level"] == logging.WARNING


def test_sdk_logger_has_a_null_handler_and_propagates(fresh_import: dict[str, Any]) -> None:
    assert fresh_import["sdk_handlers"] == ["NullHandler"]
    assert fresh_import["sdk_level"] == logging.NOTSET
    assert fresh_import["sdk_propagates"] is True


def test_sdk_logger_has_a_null_handler_in_this_process() -> None:
    handlers = logging.getLogger("anvil_runtime").handlers
    assert any(isinstance(h, logging.NullHandler) for h in handlers)


def test_public_api_is_exactly_all() -> None:
    assert anvil_runtime.__all__ == EXPECTED_ALL
    for name in anvil_runtime.__all__:
        assert getattr(anvil_runtime, name) is not None, name
    namespace: dict[str, Any] = {}
    exec("from anvil_runtime import *", namespace)  # noqa: S102 - the star import an app may write
    assert sorted(k for k in namespace if k != "__builtins__") == sorted(EXPECTED_ALL)


def test_errors_are_one_family() -> None:
    from anvil_runtime import AnvilError, ConfigurationError, NotReadyError, PromptNotFoundError

    for error in (ConfigurationError, NotReadyError, PromptNotFoundError):
        assert issubclass(error, AnvilError)
    assert issubclass(ConfigurationError, ValueError)
    assert issubclass(PromptNotFoundError, KeyError)
    assert str(PromptNotFoundError("revision 3 does not serve 'x'")) == "revision 3 does not serve 'x'"


def test_package_is_typed() -> None:
    assert (PACKAGE_ROOT / "anvil_runtime" / "py.typed").is_file()
    with (PACKAGE_ROOT / "pyproject.toml").open("rb") as handle:
        setuptools = tomllib.load(handle)["tool"]["setuptools"]
    assert "py.typed" in setuptools["package-data"]["anvil_runtime"]


def public_members(obj: type) -> list[tuple[str, Any]]:
    """The public methods and properties a class defines itself (not inherited, not dunder)."""
    members = []
    for attr, value in vars(obj).items():
        if attr.startswith("_"):
            continue
        if isinstance(value, property):
            members.append((attr, value.fget))
        elif isinstance(value, staticmethod | classmethod):
            members.append((attr, value.__func__))
        elif inspect.isfunction(value):
            members.append((attr, value))
    return members


def test_every_public_name_has_a_docstring() -> None:
    undocumented = []
    for name in anvil_runtime.__all__:
        obj = getattr(anvil_runtime, name)
        if isinstance(obj, str):
            continue
        if not (obj.__doc__ or "").strip():
            undocumented.append(name)
        if inspect.isclass(obj):
            for attr, member in public_members(obj):
                if not (getattr(member, "__doc__", None) or "").strip():
                    undocumented.append(f"{name}.{attr}")
            init = vars(obj).get("__init__")
            # A dataclass's generated __init__ is documented by the class's Attributes.
            if (
                not dataclasses.is_dataclass(obj)
                and inspect.isfunction(init)
                and not (init.__doc__ or "").strip()
            ):
                undocumented.append(f"{name}.__init__")
    assert undocumented == []


@pytest.mark.parametrize("client", ["AnvilClient", "AsyncAnvilClient"])
def test_client_methods_document_what_they_raise(client: str) -> None:
    cls = getattr(anvil_runtime, client)
    for attr in ("get_prompt", "wait_until_ready"):
        doc = inspect.getdoc(getattr(cls, attr)) or ""
        assert "Raises:" in doc, f"{client}.{attr}"
        assert "NotReadyError" in doc, f"{client}.{attr}"


def test_both_clients_offer_the_same_public_api() -> None:
    def api(cls: type) -> set[str]:
        return {name for name, _ in public_members(cls)}

    sync, asynchronous = anvil_runtime.AnvilClient, anvil_runtime.AsyncAnvilClient
    assert api(sync) - {"close"} == api(asynchronous) - {"start", "close"}
