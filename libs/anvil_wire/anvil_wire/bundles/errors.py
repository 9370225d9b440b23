"""One exception per rule of docs/bundle-format.md section 6, each with a stable ``code``."""

from __future__ import annotations

__all__ = [
    "BundleError",
    "BundleVersionUnsupported",
    "BundleTooLarge",
    "BundleMalformed",
    "BundleDigestMismatch",
    "BundleUnsigned",
    "BundleSignatureInvalid",
    "BundleUntrustedKey",
    "BundleDanglingReference",
]


class BundleError(ValueError):
    """A bundle that must not be trusted; ``code`` is its problem type (``urn:anvil:problem:<code>``)."""

    code: str


class BundleVersionUnsupported(BundleError):
    """Another major format version, or a format that is not ``anvil.bundle``."""

    code = "bundle-version-unsupported"


class BundleTooLarge(BundleError):
    """A size, ratio or entry-count limit was reached."""

    code = "bundle-too-large"


class BundleMalformed(BundleError):
    """Not gzip, not tar, bad names or order, entry types, JSON or manifest shape."""

    code = "bundle-malformed"


class BundleDigestMismatch(BundleError):
    """An object's SHA-256 differs from its name, or the objects and the manifest differ."""

    code = "bundle-digest-mismatch"


class BundleUnsigned(BundleError):
    """No seal, and unsigned bundles were not explicitly allowed."""

    code = "bundle-unsigned"


class BundleSignatureInvalid(BundleError):
    """Bad signature, wrong ``typ``, forbidden header, or a seal for another bundle or issuer."""

    code = "bundle-signature-invalid"


class BundleUntrustedKey(BundleError):
    """The seal's ``kid`` is not a trusted key of the issuer."""

    code = "bundle-untrusted-key"


class BundleDanglingReference(BundleError):
    """A dependency, revision or selection names a version the bundle does not carry."""

    code = "bundle-dangling-reference"
