"""Bundle problems: one problem type per code of docs/bundle-format.md section 6."""

from __future__ import annotations

from anvil_common.problems import NotFound, PayloadTooLarge, Problem, UnsupportedMediaType, ValidationFailed

__all__ = [
    "BundleNotFound",
    "BundleVersionUnsupported",
    "BundleTooLarge",
    "BundleMalformed",
    "BundleDigestMismatch",
    "BundleUnsigned",
    "BundleSignatureInvalid",
    "BundleUntrustedKey",
    "BundleDanglingReference",
    "BUNDLE_PROBLEMS",
    "bundle_problem",
]


class BundleNotFound(NotFound):
    code, title = "bundle-not-found", "Bundle not found"


class BundleVersionUnsupported(UnsupportedMediaType):
    code, title = "bundle-version-unsupported", "Bundle format version not supported"


class BundleTooLarge(PayloadTooLarge):
    code, title = "bundle-too-large", "Bundle too large"


class BundleMalformed(ValidationFailed):
    code, title = "bundle-malformed", "Bundle malformed"


class BundleDigestMismatch(ValidationFailed):
    code, title = "bundle-digest-mismatch", "Bundle contents do not match its manifest"


class BundleUnsigned(ValidationFailed):
    code, title = "bundle-unsigned", "Bundle not signed"


class BundleSignatureInvalid(ValidationFailed):
    code, title = "bundle-signature-invalid", "Bundle signature invalid"


class BundleUntrustedKey(ValidationFailed):
    code, title = "bundle-untrusted-key", "Bundle signed by an untrusted key"


class BundleDanglingReference(ValidationFailed):
    code, title = "bundle-dangling-reference", "Bundle references a version it does not carry"


BUNDLE_PROBLEMS: dict[str, type[Problem]] = {
    cls.code: cls
    for cls in (
        BundleVersionUnsupported,
        BundleTooLarge,
        BundleMalformed,
        BundleDigestMismatch,
        BundleUnsigned,
        BundleSignatureInvalid,
        BundleUntrustedKey,
        BundleDanglingReference,
    )
}


def bundle_problem(exc: Exception) -> Problem:
    """The problem for an ``anvil_wire.bundles.BundleError`` (its ``code`` picks the type; its
    message, written for a person, is the detail)."""
    cls = BUNDLE_PROBLEMS.get(str(getattr(exc, "code", "")), BundleMalformed)
    return cls(str(exc) or cls.title)
