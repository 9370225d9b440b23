"""The demo app `make run` starts: it embeds the runtime SDK and says what it receives.

    demo_client.py GATEWAY_URL REGISTRY_URL TOKEN_FILE CACHE_DIR

Subscribes to the environment its client token names, and prints one line per revision it
applies (and one when the connection is lost or back), so a person watching `make run` sees
a publish, a rollback or a refused revision arrive.
"""

from __future__ import annotations

import logging
import signal
import sys
import threading
from pathlib import Path
from types import FrameType

from anvil_runtime import AnvilClient, NotReadyError, Prompt

PROMPT = "support/greeting"


def _text(prompt: Prompt) -> str:
    rendered = prompt.render(name="Ada")
    if isinstance(rendered, str):
        return rendered
    return " | ".join(f"{m['role']}: {m['content']}" for m in rendered)


def main(gateway: str, registry: str, token_file: str, cache_dir: str) -> int:
    logging.basicConfig(level=logging.INFO, format="[demo client] %(message)s", stream=sys.stdout)
    logging.getLogger("httpx").setLevel(logging.WARNING)  # one line per request is noise here
    token = Path(token_file)
    client = AnvilClient(
        gateway,
        token=lambda: token.read_text().strip(),
        registry_url=registry,
        cache_dir=cache_dir,
        allow_insecure=True,  # loopback, local development only
        labels={"app": "demo"},
    )

    def changed(names: frozenset[str]) -> None:
        prompt = client.get_prompt(PROMPT) if PROMPT in names else None
        changed_names = ", ".join(sorted(names))
        line = f"[demo client] revision {client.revision} applied ({client.state.value}): {changed_names}"
        if prompt is not None:
            line += f"\n[demo client]   {PROMPT} v{prompt.version} renders: {_text(prompt)}"
        print(line, flush=True)

    client.on_change(changed)
    try:
        state = client.wait_until_ready(timeout=30)
        print(f"[demo client] ready ({state.value}) on revision {client.revision}", flush=True)
    except NotReadyError as exc:
        print(f"[demo client] not ready yet: {exc}", flush=True)
    done = threading.Event()

    def stop(signum: int, frame: FrameType | None) -> None:
        done.set()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    done.wait()
    client.close(timeout=5)
    return 0


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:5]))
