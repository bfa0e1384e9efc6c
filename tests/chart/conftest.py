"""Chart tests need a real helm: found or fetched once per session (see chartkit)."""

from __future__ import annotations

import pytest
from chartkit import HelmUnavailable, helm_binary


@pytest.fixture(autouse=True, scope="session")
def helm_available() -> str:
    try:
        return helm_binary()
    except HelmUnavailable as missing:
        pytest.fail(f"the chart tests need helm: {missing}", pytrace=False)
