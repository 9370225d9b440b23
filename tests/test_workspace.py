"""Cross-package checks of the workspace itself."""

from __future__ import annotations

import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
MEMBERS = [
    "libs/anvil_wire",
    "libs/anvil_common",
    "services/registry",
    "services/bundle-worker",
    "clients/cli",
]


def test_every_member_dependency_is_pinned_in_constraints():
    pinned = {
        line.split("==")[0].strip().lower().replace("_", "-")
        for line in (ROOT / "constraints.txt").read_text().splitlines()
        if "==" in line
    }
    for member in MEMBERS:
        deps = tomllib.loads((ROOT / member / "pyproject.toml").read_text())["project"]["dependencies"]
        for dep in deps:
            name = dep.split("[")[0].split(">")[0].split("=")[0].split("<")[0].strip().lower()
            if name.startswith("anvil-"):
                continue
            assert name in pinned, f"{member} depends on {name}, which constraints.txt does not pin"


def test_anvil_wire_depends_on_cryptography_only():
    deps = tomllib.loads((ROOT / "libs/anvil_wire/pyproject.toml").read_text())["project"]["dependencies"]
    assert [d.split(">")[0] for d in deps] == ["cryptography"]


def test_constraints_record_no_index_addresses():
    text = (ROOT / "constraints.txt").read_text()
    assert "://" not in text
    assert "--index" not in text
    assert "--extra-index" not in text
