"""Shared test setup: make the helper modules in tests/ (tiers, envtest) importable.

pytest's default import mode would put tests/ on sys.path only once a module directly in it
is imported; stories in sub-folders import `tiers` on their own, so it is added here.
"""

import sys
from pathlib import Path

_TESTS = str(Path(__file__).resolve().parent)
if _TESTS not in sys.path:
    sys.path.insert(0, _TESTS)
