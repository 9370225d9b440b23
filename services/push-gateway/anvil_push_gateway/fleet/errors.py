"""Fleet problems (problem+json types)."""

from __future__ import annotations

from anvil_common.problems import ServiceUnavailable, ValidationFailed

__all__ = ["EnvironmentMismatch", "UnknownRevision", "RegistryUnavailable"]


class EnvironmentMismatch(ValidationFailed):
    """A report's ``environment_id`` is not the id of its subscription's environment."""

    code, title = "environment-mismatch", "Environment id does not match the subscription"


class UnknownRevision(ValidationFailed):
    """A report names a revision of the environment with another manifest digest than it has."""

    code, title = "unknown-revision", "No such revision of the environment"


class RegistryUnavailable(ServiceUnavailable):
    """The environment could not be loaded from the registry; retry later."""

    code, title = "registry-unavailable", "The registry is unavailable"
