"""`zsp demo` tells the whole story on the in-memory API server and exits 0 only if it behaved."""

from __future__ import annotations

import io

from zsp_operator.tools.demo import run_demo


def test_the_demo_plays_every_step_and_exits_zero() -> None:
    out = io.StringIO()
    assert run_demo(None, out) == 0, out.getvalue()
    text = out.getvalue()
    for tag in ("before", "request", "decision", "issued", "works", "revoked", "refused", "expired", "forged", "swept", "clean", "evidence", "unused", "advise"):
        assert f"] {tag}" in text, f"step {tag!r} missing from:\n{text}"
    assert "FAILED" not in text
    assert "all " in text
    assert "steps behaved." in text

