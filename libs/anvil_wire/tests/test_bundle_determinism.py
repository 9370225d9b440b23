"""Determinism (section 3.3): the same content gives the same body bytes in any process.

Two processes build the golden example with different time zones, umasks, hash seeds, locales
and JSON member insertion orders, each with a key of its own: the digests are equal (and
golden), and the files differ only in the seal member.
"""

from __future__ import annotations

import base64
import json
import os
import subprocess
import sys
import zlib
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
CONTRACT = HERE.parents[2] / "tests" / "contract" / "bundles"
CHILD = HERE / "bundle_determinism_child.py"


def split_members(data: bytes) -> tuple[bytes, bytes]:
    """The body and the seal member of a bundle file."""
    inflater = zlib.decompressobj(16 + zlib.MAX_WBITS)
    inflater.decompress(data)
    end = len(data) - len(inflater.unused_data)
    return data[:end], data[end:]


def build(tz: str, umask: str, seed: str, lang: str, order: str) -> subprocess.Popen[bytes]:
    env = {key: value for key, value in os.environ.items() if not key.startswith(("LC_", "LANG", "TZ"))}
    env.update(TZ=tz, PYTHONHASHSEED=seed, LC_ALL=lang)
    return subprocess.Popen(
        [sys.executable, str(CHILD), str(CONTRACT / "example-input.json"), umask, order],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )


def result(process: subprocess.Popen[bytes]) -> dict[str, Any]:
    out, err = process.communicate(timeout=60)
    assert process.returncode == 0, err.decode()
    report: dict[str, Any] = json.loads(out)
    return report


def test_two_processes_build_the_same_body_and_the_golden_digest() -> None:
    first = build("UTC", "022", "1", "C", "as-is")
    second = build("Pacific/Kiritimati", "077", "4242", "C.UTF-8", "reversed")
    one, two = result(first), result(second)

    # The two processes really did differ.
    assert (one["tz"], two["tz"]) == ("+0000", "+1400")
    assert (one["umask"], two["umask"]) == ("0o22", "0o77")
    assert (one["hashseed"], two["hashseed"]) == ("1", "4242")
    assert (one["first_member"], two["first_member"]) == ("slug", "environments")

    golden = (CONTRACT / "example-digest.txt").read_text(encoding="ascii").strip()
    assert one["digest"] == two["digest"] == golden
    body_one, seal_one = split_members(base64.b64decode(one["data"]))
    body_two, seal_two = split_members(base64.b64decode(two["data"]))
    assert body_one == body_two
    assert seal_one != seal_two  # another key (and another time): only the seal differs
