"""Builds the golden example's bundle in a process of its own (run by test_bundle_determinism.py).

Usage: ``python bundle_determinism_child.py INPUT UMASK ORDER`` where ORDER is ``as-is`` or
``reversed`` (every JSON object's members inserted in reverse order). Prints a JSON object with
the digest, the bundle file (base64) and what the process ran with.
"""

from __future__ import annotations

import base64
import json
import locale
import os
import sys
import time
from pathlib import Path
from typing import Any

from anvil_wire import KeySet
from anvil_wire.bundles import assemble_manifest, write_bundle


def reverse_members(value: Any) -> Any:
    """The same JSON value with every object's members inserted in reverse order."""
    if isinstance(value, dict):
        return {key: reverse_members(value[key]) for key in reversed(list(value))}
    if isinstance(value, list):
        return [reverse_members(item) for item in value]
    return value


def main(path: str, umask: str, order: str) -> None:
    os.umask(int(umask, 8))
    time.tzset()
    locale.setlocale(locale.LC_ALL, "")
    doc = json.loads(Path(path).read_text(encoding="utf-8"))
    if order == "reversed":
        doc = reverse_members(doc)
    # Every process signs with a key of its own, at its own time: only the seal may differ.
    manifest, contents = assemble_manifest(doc["snapshot"], exporter=doc["exporter"])
    written = write_bundle(manifest, contents, KeySet.generate().active)
    report = {
        "digest": written.digest,
        "data": base64.b64encode(written.data).decode("ascii"),
        "tz": time.strftime("%z"),
        "umask": oct(os.umask(0)),
        "hashseed": os.environ.get("PYTHONHASHSEED"),
        "first_member": next(iter(manifest["projects"][0])),
    }
    print(json.dumps(report))


if __name__ == "__main__":
    main(*sys.argv[1:])
