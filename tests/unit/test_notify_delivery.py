"""Delivering notifications (observe/notify.py), with transports standing in for the services.

Covered: `notify` returns at once whatever the transport does; one message per event per
request and target, however often the transition is reported; a failing transport is retried
by the retry policy and counted, then given up with a Warning naming the target and never its
URL; a dead target holds at most `queue` messages (the rest are dropped and counted) while
another target keeps delivering; close() drains what it can within its bound and stops;
the routes file loads from YAML and a mistake names the file and the field; the CloudEvent
of a message carries its type, subject, a stable id and the message as data; every routes file
docs/notifications.md shows loads, and Apprise accepts each of its URLs; a changed routes file
is used from the next message on, a broken one is logged and the previous routes stay.
"""

from __future__ import annotations

import asyncio
import re
import textwrap
from pathlib import Path
from typing import Any

import pytest

from harness import eventually
from zsp_operator.core import notify as n
from zsp_operator.core.errors import InvalidObject
from zsp_operator.core.models import NotifyRoute
from zsp_operator.observe import notify as delivery
from zsp_operator.observe.metrics import Metrics

CONFIG = n.NotifyConfig.model_validate(
    {
        "targets": {
            "slack": {"apprise": "json://127.0.0.1:1/x"},
            "hook": {"webhook": "http://127.0.0.1:1/y"},
        },
        "routes": [{"events": ["issued", "ended"], "targets": ["slack", "hook"]}],
    }
)
ABOUT = n.Subject(name="r", namespace="ns", uid="uid-1", policy="p")


class Recorder:
    """A transport: records messages, fails its first `fail` sends, or hangs while `hang` is set."""

    def __init__(self, fail: int = 0, hang: bool = False) -> None:
        self.sent: list[n.Message] = []
        self.fail = fail
        self.hang = asyncio.Event() if hang else None

    async def send(self, msg: n.Message) -> None:
        if self.hang is not None:
            await self.hang.wait()
        if self.fail:
            self.fail -= 1
            raise delivery.DeliveryError("the receiver answered HTTP 503")
        self.sent.append(msg)


def notifier(**transports: Recorder) -> tuple[delivery.Notifier, Metrics]:
    metrics = Metrics()
    made = {"slack": Recorder(), "hook": Recorder(), **transports}
    return delivery.Notifier(CONFIG, metrics, attempts=3, queue=4, timeout=5, transports=dict(made)), metrics


def value(metrics: Metrics, family: str, **labels: str) -> float:
    return sum(
        s.value
        for m in getattr(metrics, family).collect()
        for s in m.samples
        if s.name.endswith(("_total", "_queue")) and all(s.labels.get(k) == v for k, v in labels.items())
    )


async def test_one_message_per_event_request_and_target() -> None:
    slack, hook = Recorder(), Recorder()
    notes, metrics = notifier(slack=slack, hook=hook)
    for _ in range(3):
        notes.notify("issued", ABOUT)
    notes.notify("ended", ABOUT)
    notes.notify("approvalNeeded", ABOUT)  # routed nowhere
    await notes.close()
    assert [m.event for m in slack.sent] == ["issued", "ended"]
    assert [m.event for m in hook.sent] == ["issued", "ended"]
    assert value(metrics, "notifications_sent", target="slack", event="issued") == 1


async def test_a_policy_route_adds_targets() -> None:
    slack = Recorder()
    notes, _ = notifier(slack=slack)
    notes.notify("approvalNeeded", ABOUT, [NotifyRoute(events=["approvalNeeded"], targets=["slack"])])
    await notes.close()
    assert [m.event for m in slack.sent] == ["approvalNeeded"]


async def test_failures_are_retried_counted_then_given_up_with_a_warning() -> None:
    warnings: list[tuple[str, str]] = []

    async def warn(msg: n.Message, reason: str, text: str) -> None:
        warnings.append((reason, text))

    flaky, broken = Recorder(fail=2), Recorder(fail=99)
    notes, metrics = notifier(slack=flaky, hook=broken)
    notes.warn = warn
    notes.notify("issued", ABOUT)
    await asyncio.wait_for(_until(lambda: len(flaky.sent) == 1 and warnings), 10)
    assert value(metrics, "notification_retries", target="slack") == 2
    assert value(metrics, "notification_retries", target="hook") == 2
    assert value(metrics, "notification_failures", target="hook", reason="gave-up") == 1
    assert warnings == [
        (
            "NotificationFailed",
            "notification issued to target hook failed after 3 attempt(s): the receiver answered HTTP 503",
        )
    ]
    assert "127.0.0.1" not in warnings[0][1]
    await notes.close()


async def test_a_dead_target_holds_at_most_its_queue_and_never_blocks_another() -> None:
    dead, alive = Recorder(hang=True), Recorder()
    notes, metrics = notifier(hook=dead, slack=alive)
    for index in range(20):
        started = asyncio.get_running_loop().time()
        notes.notify("issued", n.Subject(name=f"r{index}", namespace="ns", uid=f"u{index}"))
        assert asyncio.get_running_loop().time() - started < 0.05, "notify never waits for delivery"
        await asyncio.sleep(0.001)  # transitions come one reconcile at a time
    await asyncio.wait_for(_until(lambda: len(alive.sent) == 20), 5)
    # One in the worker's hands, `queue` (4) waiting; the other 15 dropped and counted.
    assert value(metrics, "notification_failures", target="hook", reason="queue-full") == 15
    assert value(metrics, "notification_queue", target="hook") == 4
    await asyncio.wait_for(notes.close(), delivery.DRAIN_SECONDS + 2)


async def _until(check: Any) -> None:
    await eventually(check, within=10, every=0.01)


def test_routes_file_loads_and_mistakes_name_file_and_field(tmp_path: Path) -> None:
    good = tmp_path / "routes.yaml"
    good.write_text("targets:\n  leads: {apprise: 'slack://a/b/c'}\nbreakGlass: [leads]\n")
    assert delivery.load_config(str(good)).break_glass == ["leads"]
    bad = tmp_path / "bad.yaml"
    bad.write_text("targets:\n  leads: {apprise: 'slack://a/b/c', webhook: 'https://x'}\n")
    with pytest.raises(InvalidObject) as refused:
        delivery.load_config(str(bad))
    assert f"notification routes {bad}: targets.leads: set exactly one of apprise" in str(refused.value)
    with pytest.raises(ValueError, match="cannot be read"):
        delivery.load_config(str(tmp_path / "missing.yaml"))


def test_an_unknown_apprise_url_is_refused_without_showing_it() -> None:
    with pytest.raises(ValueError, match="not one Apprise understands") as refused:
        delivery.AppriseTransport(["nosuchservice://secret-token"], 5)
    assert "secret-token" not in str(refused.value)


def test_the_cloudevent_of_a_message() -> None:
    msg = n.message("issued", ABOUT)
    event = delivery.CloudEventTransport.event_of(msg)
    assert event.get_type() == "dev.zsp.accessrequest.issued"
    assert event.get_subject() == "ns/r"
    assert event.get_id() == "uid-1/issued"
    assert event.get_source() == "/apis/zsp.dev/v1alpha1/namespaces/ns/accessrequests/r"
    data = event.get_data()
    assert isinstance(data, dict)
    assert data["title"] == msg.title
    assert data["request"] == {"name": "r", "namespace": "ns", "uid": "uid-1"}


DOC = Path(__file__).resolve().parents[2] / "docs" / "notifications.md"


def _doc_routes_files() -> list[str]:
    blocks = re.findall(r"```yaml\n(.*?)```", DOC.read_text(encoding="utf-8"), flags=re.DOTALL)
    return [textwrap.dedent(block) for block in blocks if "# routes.yaml" in block]


@pytest.mark.parametrize("text", _doc_routes_files())
def test_every_routes_file_in_the_docs_loads_and_reaches_its_services(text: str, tmp_path: Path) -> None:
    path = tmp_path / "routes.yaml"
    path.write_text(text)
    config = delivery.load_config(str(path))
    notes = delivery.Notifier(config, Metrics())  # builds every transport: Apprise accepts each URL
    assert set(config.targets) == set(notes._lanes)


def test_the_docs_show_two_routes_files() -> None:
    assert len(_doc_routes_files()) == 2


async def test_a_changed_routes_file_is_reloaded_and_a_broken_one_ignored(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    made: dict[str, Recorder] = {}

    def fake_transport(target: n.Target, timeout: float) -> Recorder:
        return made.setdefault(target.webhook or "", Recorder())

    monkeypatch.setattr(delivery, "transport_for", fake_transport)
    path = tmp_path / "routes.yaml"
    path.write_text("targets: {a: {webhook: 'http://a'}}\nroutes: [{events: [issued], targets: [a]}]\n")
    notes = delivery.Notifier.from_file(str(path), Metrics(), reload_every=0)
    notes.notify("issued", n.Subject(name="r1", namespace="ns", uid="u1"))
    await _until(lambda: made["http://a"].sent)

    # As a Secret volume does: the new file replaces the old one.
    new = tmp_path / "new.yaml"
    new.write_text("targets: {b: {webhook: 'http://b'}}\nroutes: [{events: [issued], targets: [b]}]\n")
    new.replace(path)
    notes.notify("issued", n.Subject(name="r2", namespace="ns", uid="u2"))

    broken = tmp_path / "broken.yaml"
    broken.write_text("targets: {b: {webhook: 'http://b'}}\nroutes: [{events: [isued], targets: [b]}]\n")
    broken.replace(path)
    notes.notify("issued", n.Subject(name="r3", namespace="ns", uid="u3"))
    await notes.close()

    assert [m.request_uid for m in made["http://a"].sent] == ["u1"]
    assert [m.request_uid for m in made["http://b"].sent] == ["u2", "u3"], "a broken file changes nothing"
    assert set(notes.config.targets) == {"b"}
