"""The SDK's version, sent to the gateway in ``hello.sdk``."""

__version__ = "0.1.0"
# hello.sdk.name, as the golden messages of tests/contract/push carry it
SDK_NAME = "anvil-python-runtime"
USER_AGENT = f"{SDK_NAME}/{__version__}"
