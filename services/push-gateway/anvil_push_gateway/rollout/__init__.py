"""Rollout safety: per-environment policies, and the automatic rollback of a failing revision."""
