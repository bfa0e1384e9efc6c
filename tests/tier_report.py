"""Both tiers, one story: per-tier counts at the end of a run, and a check that they agree.

A story runs with the same body on the in-memory API server and on a real control plane.
Passing on both is not enough: the in-memory server may accept what the real one refuses
and the story may never look. So while a story runs it notes what it observed (`observe`):
the phases its requests reached (`harness.wait_for_phase`) and every write the API server
refused to a story's own client (status and reason; the operator's calls are its own
business and may race). When a story passed on both tiers, the two lists must be equal; a
difference fails the run and names the story, because one of the two servers is wrong.

`ZSP_REQUIRE_REAL_TIER=1` (set by CI) turns a missing control plane into a failure instead
of a skip, so the real tier can never be quietly left out.
"""

from __future__ import annotations

import base64
import json
import os
from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest

TIERS = ("sim", "envtest")
REQUIRE_REAL_TIER = "ZSP_REQUIRE_REAL_TIER"
_TIER = "zsp-tier"
_OBSERVED = "zsp-observed"
# The operator under test acts as this ServiceAccount; its calls are not the story's.
OPERATOR_SUBJECT = "system:serviceaccount:zsp-system:zsp-operator"

_NAMED_SKIPS = 5  # more skipped for one reason are counted, not named (a whole tier missing)

_observations: list[str] | None = None


def real_tier_required() -> bool:
    return os.environ.get(REQUIRE_REAL_TIER, "") not in ("", "0", "false")


def observe(kind: str, detail: str) -> None:
    """Note something the running story saw that the other tier must see too."""
    if _observations is not None:
        _observations.append(f"{kind}: {detail}")


def token_subject(token: str | None) -> str | None:
    """The `sub` of a JWT bearer token (unverified: only to tell clients apart), else None."""
    parts = (token or "").split(".")
    if len(parts) != 3:
        return None
    try:
        claims = json.loads(base64.urlsafe_b64decode(parts[1] + "=" * (-len(parts[1]) % 4)))
    except ValueError:
        return None
    subject = claims.get("sub") if isinstance(claims, dict) else None
    return subject if isinstance(subject, str) else None


def resource_of(path: str) -> str:
    """`/api/v1/namespaces/ns-3fa2/serviceaccounts/x/token` -> `serviceaccounts/token`.

    Names are left out (stories make namespaces with random suffixes); the subresource stays.
    """
    parts = path.strip("/").split("/")
    if parts[:1] == ["api"]:
        parts = parts[2:]
    elif parts[:1] == ["apis"]:
        parts = parts[3:]
    if len(parts) > 2 and parts[0] == "namespaces":
        parts = parts[2:]
    return "/".join(parts[:1] + parts[2:3])


def tier_of(item: pytest.Item) -> str | None:
    """The tier a test runs on: `tiers.TIER_PARAMS` marks each parameter `tier(NAME)`."""
    marker = item.get_closest_marker("tier")
    return str(marker.args[0]) if marker is not None and marker.args else None


def story_key(nodeid: str, tier: str) -> str:
    """The node id with its tier taken out of the parameter id: the same story on either tier."""
    head, bracket, params = nodeid.partition("[")
    if not bracket:
        return nodeid
    parts = params.rstrip("]").split("-")
    if tier in parts:
        parts[parts.index(tier)] = "*"
    return f"{head}[{'-'.join(parts)}]"


# --- on every worker ------------------------------------------------------------------------


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        tier = tier_of(item)
        if tier is not None:
            item.user_properties.append((_TIER, tier))


@pytest.fixture(autouse=True)
def _record_observations(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    global _observations  # one test runs at a time in a worker
    if tier_of(request.node) is None:
        yield
        return
    _observations = []
    _watch_refusals(monkeypatch)
    try:
        yield
    finally:
        request.node.user_properties.append((_OBSERVED, json.dumps(_observations)))
        _observations = None


def _watch_refusals(monkeypatch: pytest.MonkeyPatch) -> None:
    from zsp_operator.kube import client as kube_client
    from zsp_operator.kube.errors import KubeError

    original = kube_client.Kube._call

    async def recording(self: kube_client.Kube, method: str, path: str, **kwargs: Any) -> Any:
        try:
            return await original(self, method, path, **kwargs)
        except KubeError as err:
            resource = resource_of(path)
            dry_run = bool((kwargs.get("query") or {}).get("dryRun"))
            if (
                not dry_run
                and _is_story_write(method, resource, err)
                and token_subject(self.connection.token) != OPERATOR_SUBJECT
            ):
                observe("refused", f"{method} {resource}: {err.status} {err.reason}")
            raise

    monkeypatch.setattr(kube_client.Kube, "_call", recording)


def _is_story_write(method: str, resource: str, err: Any) -> bool:
    """A write whose refusal is part of the story.

    Left out: reads; dry runs (readiness probes repeat them until the webhooks answer) and
    access reviews, which are questions (stories poll them until the answer changes, so how
    many were asked is timing); and `AlreadyExists`, which set-up code takes
    as "already there" when it installs what an earlier story on the same server installed.
    """
    if method == "GET" or resource.endswith(("accessreviews", "tokenreviews")):
        return False
    return not (err.status == 409 and err.reason == "AlreadyExists")


# --- on the controller (or the lone process) -------------------------------------------------


@dataclass
class _Story:
    outcome: str = "passed"
    skip_reason: str = ""
    observed: list[str] | None = None


@dataclass
class _Tally:
    stories: dict[str, dict[str, _Story]] = field(default_factory=lambda: defaultdict(dict))
    differences: list[str] = field(default_factory=list)


_tally = _Tally()


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    properties = dict(report.user_properties)
    tier = properties.get(_TIER)
    if not isinstance(tier, str):
        return
    story = _tally.stories[tier].setdefault(report.nodeid, _Story())
    if report.failed:
        story.outcome = "failed"
    elif report.skipped and story.outcome != "failed":
        story.outcome = "skipped"
        longrepr = report.longrepr
        story.skip_reason = str(longrepr[2]) if isinstance(longrepr, tuple) else str(longrepr)
    if _OBSERVED in properties:
        story.observed = json.loads(str(properties[_OBSERVED]))


def _differences() -> list[str]:
    by_key: dict[str, dict[str, _Story]] = defaultdict(dict)
    for tier, stories in _tally.stories.items():
        for nodeid, story in stories.items():
            by_key[story_key(nodeid, tier)][tier] = story
    found = []
    for key, tiers in sorted(by_key.items()):
        sim, real = tiers.get("sim"), tiers.get("envtest")
        if sim is None or real is None or sim.outcome != "passed" or real.outcome != "passed":
            continue
        if sim.observed != real.observed:
            found.append(f"{key}\n    sim:     {sim.observed}\n    envtest: {real.observed}")
    return found


def pytest_sessionfinish(session: pytest.Session) -> None:
    if hasattr(session.config, "workerinput"):
        return  # a worker: the controller compares what all workers reported
    _tally.differences = _differences()
    if _tally.differences and session.exitstatus == pytest.ExitCode.OK:
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


def pytest_terminal_summary(terminalreporter: Any, config: pytest.Config) -> None:
    if hasattr(config, "workerinput") or not _tally.stories:
        return
    write = terminalreporter.write_line
    terminalreporter.section("tiers")
    for tier in TIERS:
        stories = _tally.stories.get(tier, {})
        counts = {
            kind: sum(1 for s in stories.values() if s.outcome == kind)
            for kind in ("passed", "failed", "skipped")
        }
        write(f"{tier}: {counts['passed']} passed, {counts['failed']} failed, {counts['skipped']} skipped")
        by_reason: dict[str, list[str]] = defaultdict(list)
        for nodeid, story in sorted(stories.items()):
            if story.outcome == "skipped":
                by_reason[story.skip_reason.removeprefix("Skipped: ")].append(nodeid)
        for reason, nodeids in by_reason.items():
            if len(nodeids) > _NAMED_SKIPS:
                write(f"  {len(nodeids)} skipped: {reason}")
            else:
                write("\n".join(f"  skipped {nodeid}: {reason}" for nodeid in nodeids))
    if _tally.differences:
        terminalreporter.section("tier parity: the same story observed differently", red=True)
        for difference in _tally.differences:
            write(difference)
        write(f"{len(_tally.differences)} stories differ between the tiers: one of the two servers is wrong")
