"""Fixtures for the core's tests and each plugin's own tests (plugins/*/tests)."""

pytest_plugins = ["personahub_core.pytest_fixtures"]
