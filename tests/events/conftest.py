"""Event-log fixtures: the core suite's migrated catalog and service, a fresh tenant per test."""

from __future__ import annotations

from tests.core.conftest import base_settings, cold_dir, runtime, service, tenant

__all__ = ["base_settings", "cold_dir", "runtime", "service", "tenant"]
