"""Test and benchmark support for import planning (the service never imports this package).

``Exporter`` is an exporting organisation in memory that writes valid manifests (checked with
``validate_manifest``) as docs/bundle-format.md section 4 and the registry's snapshot make
them. ``TargetModel`` is a target organisation in memory: it answers import-state queries (B2)
and applies import bodies (B3) with the registry's rules (expectations, archived objects, set
members, served versions), so tests can check that an applicable plan applies and that
planning again afterwards finds nothing to do.
"""

from __future__ import annotations

from .exporter import Content, Exporter, make_content
from .target import TargetModel, TargetRefused

__all__ = ["Content", "Exporter", "TargetModel", "TargetRefused", "make_content"]
