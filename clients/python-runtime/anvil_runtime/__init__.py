"""Anvil's runtime SDK: the prompts of one environment, pushed live, verified, cached, rendered.

    from anvil_runtime import AnvilClient

    client = AnvilClient("https://gateway.example", token=token, cache_dir="/var/cache/app/anvil")
    client.wait_until_ready(timeout=5)
    text = client.get_prompt("support/greeting").render(name="Ada")

``AsyncAnvilClient`` is the same for asyncio apps. Every revision is verified against the
registry's signing keys before it is served; see docs/runtime-sdk.md.
"""

import logging

from anvil_wire import RenderError

from ._async_client import AsyncAnvilClient
from ._client import AnvilClient
from ._core import ClientState
from ._errors import AnvilError, ConfigurationError, NotReadyError, PromptNotFoundError
from ._prompt import Prompt
from ._version import __version__

__all__ = [
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

# A library never configures logging: records go nowhere unless the app says where.
logging.getLogger("anvil_runtime").addHandler(logging.NullHandler())
