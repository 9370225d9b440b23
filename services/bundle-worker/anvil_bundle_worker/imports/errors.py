"""Import problems (problem+json types); bundle problems are bundles/errors.py."""

from __future__ import annotations

from anvil_common.problems import Forbidden, Gone, ValidationFailed

__all__ = ["ImportOutsideProject", "ImportPlanInvalid", "UploadGone"]


class ImportOutsideProject(Forbidden):
    code, title = "import-outside-project", "Bundle reaches outside the token's project"


class ImportPlanInvalid(ValidationFailed):
    code, title = "import-plan-invalid", "The bundle cannot be planned as asked"


class UploadGone(Gone):
    code, title = "upload-gone", "The uploaded bundle is gone"
