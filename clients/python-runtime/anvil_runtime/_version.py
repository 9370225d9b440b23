"""The SDK's version, sent to the gateway in ``hello.sdk``."""

__version__ = "0.1.0"
