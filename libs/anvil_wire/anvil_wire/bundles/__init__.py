"""The bundle format (docs/bundle-format.md, version 1.0): write, read and verify.

The reference implementation shared by the bundle worker and the ``anvil`` CLI, so that what
one writes the other reads byte for byte.
"""

from .errors import (
    BundleDanglingReference,
    BundleDigestMismatch,
    BundleError,
    BundleMalformed,
    BundleSignatureInvalid,
    BundleTooLarge,
    BundleUnsigned,
    BundleUntrustedKey,
    BundleVersionUnsupported,
)
from .fastjson import parse_plain, parse_plain_spliced
from .manifest import validate_manifest
from .reader import Bundle, peek_version, read_bundle
from .seal import Seal, TrustedKeys, make_seal, verify_seal
from .spec import (
    FORMAT,
    FORMAT_VERSION,
    MANIFEST_ENTRY,
    MEDIA_TYPE,
    SEAL_ENTRY,
    SEAL_FORMAT,
    SEAL_VERSION,
    VERSION_ENTRY,
    Limits,
    check_members,
    reader_is_strict,
)
from .writer import WrittenBundle, assemble_manifest, write_bundle

__all__ = [
    "FORMAT",
    "FORMAT_VERSION",
    "MEDIA_TYPE",
    "SEAL_FORMAT",
    "SEAL_VERSION",
    "VERSION_ENTRY",
    "MANIFEST_ENTRY",
    "SEAL_ENTRY",
    "Limits",
    "reader_is_strict",
    "check_members",
    "BundleError",
    "BundleVersionUnsupported",
    "BundleTooLarge",
    "BundleMalformed",
    "BundleDigestMismatch",
    "BundleUnsigned",
    "BundleSignatureInvalid",
    "BundleUntrustedKey",
    "BundleDanglingReference",
    "Seal",
    "TrustedKeys",
    "make_seal",
    "verify_seal",
    "validate_manifest",
    "assemble_manifest",
    "parse_plain",
    "parse_plain_spliced",
    "write_bundle",
    "WrittenBundle",
    "read_bundle",
    "Bundle",
    "peek_version",
]
