"""Shared test setup. The helper modules in tests/ (tiers, envtest, harness...) are importable
through pytest's `pythonpath` setting; `tier_report` counts both tiers and checks they agree."""

pytest_plugins = ["tier_report"]
