"""Notifications delivered where people work, off the lifecycle's path.

Transports:

- **Apprise** (`apprise` on PyPI) for Slack, Microsoft Teams, e-mail, PagerDuty, Opsgenie,
  Mattermost, Matrix and a hundred more, each configured by one URL. It is actively kept,
  speaks every service our users named with one call and one URL syntax, lets the operator
  ship no hand-written client per service, and its async entry point runs each service's
  blocking HTTP off the event loop.
- **A generic webhook** that receives every message as a CloudEvent (v1.0, structured JSON
  over HTTP POST), built with the CNCF `cloudevents` SDK so any receiver that understands
  CloudEvents (Knative, Argo Events, an in-house service) can route on `type` and `subject`.
  The event's `id` is `<request uid>/<event>`, so a retried delivery is recognisably the same.

Never in the way: `Notifier.notify` only queues and returns. Each target has its own bounded
queue and one worker, so a slow or dead target delays only its own messages and holds at most
`queue` of them; beyond that new messages for it are dropped and counted. A failed delivery
is retried by the operator's one retry policy (`kube/retry.py`) up to `attempts` times, each
attempt bounded by `timeout`; retries and failures are metrics (docs/metrics.md) and a
failure that gives up is a Warning Event on the request. Target URLs and headers come only
from the routes file and are never logged: error messages name the target, not its URL.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from typing import Any, Protocol

import aiohttp
import yaml
from cloudevents.core.bindings.http import to_structured_event
from cloudevents.core.v1.event import CloudEvent

from zsp_operator.core import constants as c
from zsp_operator.core.errors import parse
from zsp_operator.core.models import NotifyRoute
from zsp_operator.core.notify import (
    Message,
    NotifyConfig,
    Subject,
    Target,
    message,
    targets_for,
    unknown_targets,
)
from zsp_operator.kube import retry
from zsp_operator.observe.metrics import Metrics

log = logging.getLogger(__name__)
RELOAD_SECONDS = 10.0  # at most this often the routes file is looked at for a change


def _stamp(path: str) -> tuple[int, int, int] | None:
    """What tells a changed file: a Secret volume swaps a symlink, so inode and mtime move."""
    try:
        found = os.stat(path)
    except OSError:
        return None
    return (found.st_ino, found.st_mtime_ns, found.st_size)


CLOUDEVENT_TYPE_PREFIX = "dev.zsp.accessrequest."
DRAIN_SECONDS = 2.0  # how long a stopping operator keeps delivering queued messages
_REMEMBERED = 10_000  # (request, event, target) already queued: one message per event per request

Warn = Callable[[Message, str, str], Awaitable[None]]


class DeliveryError(Exception):
    """A delivery failed; the text is safe to log and show (no URL, no header)."""


class Transport(Protocol):
    async def send(self, msg: Message) -> None: ...


def load_config(path: str) -> NotifyConfig:
    """Read the routes file (YAML or JSON); a mistake is an error naming the file and the field."""
    source = f"notification routes {path}"
    try:
        raw = yaml.safe_load(Path(path).read_text())
    except (OSError, yaml.YAMLError) as err:
        raise ValueError(f"{source}: cannot be read: {err}") from err
    return parse(NotifyConfig, raw or {}, source)


class AppriseTransport:
    """Every URL of one target, through Apprise (its own retries off: ours apply)."""

    def __init__(self, urls: Sequence[str], timeout: float) -> None:
        import apprise  # a tenth of a second to import: only when a target uses it

        self._apprise = apprise.Apprise()
        self._timeout = timeout
        for index, url in enumerate(urls):
            if not self._apprise.add(url):
                raise ValueError(f"apprise URL #{index + 1} is not one Apprise understands")

    async def send(self, msg: Message) -> None:
        import apprise  # loaded by __init__ already

        kind = apprise.NotifyType.WARNING if msg.warning else apprise.NotifyType.INFO
        result = await self._apprise.async_notify(
            title=msg.title,
            body=msg.text,
            notify_type=kind,
            body_format=apprise.NotifyFormat.TEXT,
            timeout=self._timeout,
        )
        if not result:
            raise DeliveryError("the service did not accept the message")


class CloudEventTransport:
    """One HTTP POST per message: a structured-mode CloudEvent whose data is the message."""

    def __init__(self, url: str, headers: dict[str, str], timeout: float) -> None:
        self._url = url
        self._headers = dict(headers)
        self._timeout = aiohttp.ClientTimeout(total=timeout)

    @staticmethod
    def event_of(msg: Message) -> CloudEvent:
        request = msg.data.get("request") or {}
        return CloudEvent(
            {
                "type": CLOUDEVENT_TYPE_PREFIX + msg.event,
                "source": f"/apis/{c.API_VERSION}/namespaces/{request.get('namespace', '')}"
                f"/accessrequests/{request.get('name', '')}",
                "subject": f"{request.get('namespace', '')}/{request.get('name', '')}",
                "id": f"{msg.request_uid}/{msg.event}",
                "datacontenttype": "application/json",
            },
            {"title": msg.title, **msg.data},
        )

    async def send(self, msg: Message) -> None:
        wire = to_structured_event(self.event_of(msg))
        headers = {**wire.headers, **self._headers}
        try:
            async with (
                aiohttp.ClientSession(timeout=self._timeout) as session,
                session.post(self._url, data=wire.body, headers=headers) as answer,
            ):
                if answer.status >= 300:
                    raise DeliveryError(f"the receiver answered HTTP {answer.status}")
        except aiohttp.ClientError as err:
            # The exception's text may carry the URL (and a token in it): name only its kind.
            raise DeliveryError(f"could not reach the receiver ({type(err).__name__})") from None


def transport_for(target: Target, timeout: float) -> Transport:
    if target.webhook is not None:
        return CloudEventTransport(target.webhook, target.headers, timeout)
    return AppriseTransport(target.apprise or [], timeout)


def transports_for(config: NotifyConfig, timeout: float) -> dict[str, Transport]:
    """A transport per target; a URL no transport understands is an error naming the target."""
    made: dict[str, Transport] = {}
    for name, target in config.targets.items():
        try:
            made[name] = transport_for(target, timeout)
        except ValueError as err:
            raise ValueError(f"notification target {name}: {err}") from None
    return made


class _Lane:
    """One target's bounded queue and its worker, started on the running loop when first used."""

    def __init__(self, name: str, transport: Transport, limit: int) -> None:
        self.name = name
        self.transport = transport
        self.limit = limit
        self.queue: asyncio.Queue[Message] | None = None
        self.task: asyncio.Task[None] | None = None


class Notifier:
    """Queues messages per target and delivers them in the background; see the module docstring."""

    def __init__(
        self,
        config: NotifyConfig,
        metrics: Metrics,
        *,
        attempts: int = 8,
        queue: int = 1000,
        timeout: float = 10.0,
        retry_cap: float = retry.CAP,
        transports: dict[str, Transport] | None = None,
        path: str | None = None,
        reload_every: float = RELOAD_SECONDS,
    ) -> None:
        self.config = config
        self.metrics = metrics
        self.attempts = attempts
        self.timeout = timeout
        self.retry_cap = retry_cap
        self.limit = queue
        self.warn: Warn | None = None
        made = transports if transports is not None else transports_for(config, timeout)
        self._lanes = {name: _Lane(name, made[name], queue) for name in config.targets}
        # The file the routes came from: a mounted Secret is updated in place, so it is re-read
        # when it changes (looked at, at most every `reload_every` seconds, when a message comes).
        self._path = path
        self._reload_every = reload_every
        self._next_look = time.monotonic() + reload_every
        self._stamp = _stamp(path) if path else None
        self._queued: OrderedDict[tuple[str, str, str], None] = OrderedDict()
        self._unknown: set[str] = set()  # targets policies name that the file lacks, logged once each

    def notify(self, event: str, about: Subject, policy_routes: Sequence[NotifyRoute] = ()) -> None:
        """Queue the message of `event` for every target routed to it, once per request; never waits."""
        self._reload_if_changed()
        for name in set(unknown_targets(self.config, policy_routes)) - self._unknown:
            self._unknown.add(name)
            log.warning(
                "AccessPolicy %s routes to target %s, which the routes file does not define",
                about.policy,
                name,
            )
        names = targets_for(event, self.config, policy_routes, break_glass=about.break_glass)
        if not names:
            return
        msg = message(event, about)
        for name in names:
            key = (about.uid, event, name)
            if key in self._queued:
                continue
            self._queued[key] = None
            while len(self._queued) > _REMEMBERED:
                self._queued.popitem(last=False)
            self._put(self._lanes[name], msg)

    def _put(self, lane: _Lane, msg: Message) -> None:
        queue = self._ready(lane)
        try:
            queue.put_nowait(msg)
        except asyncio.QueueFull:
            self.metrics.notification_failures.labels(lane.name, "queue-full").inc()
            log.warning("notification queue of target %s is full: dropped %s", lane.name, msg.title)
            return
        self.metrics.notification_queue.labels(lane.name).set(queue.qsize())

    def _ready(self, lane: _Lane) -> asyncio.Queue[Message]:
        if lane.queue is None or lane.task is None or lane.task.done():
            # (Re)started on the running loop: an operator may be restarted on a new loop.
            lane.queue = asyncio.Queue(lane.limit)
            lane.task = asyncio.create_task(
                self._deliver_forever(lane, lane.queue), name=f"zsp-notify-{lane.name}"
            )
        return lane.queue

    async def _deliver_forever(self, lane: _Lane, queue: asyncio.Queue[Message]) -> None:
        while True:
            msg = await queue.get()
            try:
                await self._deliver(lane, msg)
            finally:
                queue.task_done()
                self.metrics.notification_queue.labels(lane.name).set(queue.qsize())

    async def _deliver(self, lane: _Lane, msg: Message) -> None:
        why = ""
        for attempt in range(self.attempts):
            try:
                await asyncio.wait_for(lane.transport.send(msg), self.timeout)
            except DeliveryError as err:
                why = str(err)
            except TimeoutError:
                why = f"no answer within {self.timeout:g}s"
            except OSError as err:  # its text may name the address: say only what kind it is
                why = f"could not reach the service ({type(err).__name__})"
            except Exception as err:  # a transport's own bug must not stop the lane
                why = f"unexpected {type(err).__name__}"
                log.exception("notification to target %s failed unexpectedly", lane.name)
            else:
                self.metrics.notifications_sent.labels(lane.name, msg.event).inc()
                return
            if attempt + 1 < self.attempts:
                self.metrics.notification_retries.labels(lane.name).inc()
                await asyncio.sleep(retry.backoff(attempt, cap=self.retry_cap))
        self.metrics.notification_failures.labels(lane.name, "gave-up").inc()
        text = (
            f"notification {msg.event} to target {lane.name} failed after {self.attempts} attempt(s): {why}"
        )
        log.warning("%s (%s)", text, msg.title)
        if self.warn is not None:
            await self.warn(msg, "NotificationFailed", text)

    @classmethod
    def from_file(cls, path: str, metrics: Metrics, **options: Any) -> Notifier:
        """The notifier of a routes file, which it re-reads when the file changes."""
        return cls(load_config(path), metrics, path=path, **options)

    def _reload_if_changed(self) -> None:
        if self._path is None or time.monotonic() < self._next_look:
            return
        self._next_look = time.monotonic() + self._reload_every
        stamp = _stamp(self._path)
        if stamp is None or stamp == self._stamp:
            return
        self._stamp = stamp
        try:
            config = load_config(self._path)
            made = transports_for(config, self.timeout)
        except ValueError as err:
            log.warning("notification routes not reloaded, the previous ones stay in force: %s", err)
            return
        self.reload(config, made)

    def reload(self, config: NotifyConfig, transports: dict[str, Transport]) -> None:
        """Use new routes and targets: a target kept keeps its queue (a changed URL applies to
        what waits in it); a target removed stops, and what waited for it is dropped."""
        for name in set(self._lanes) - set(config.targets):
            lane = self._lanes.pop(name)
            if lane.task is not None:
                lane.task.cancel()
            log.info("notification target %s removed from the routes file", name)
        for name in config.targets:
            if name in self._lanes:
                self._lanes[name].transport = transports[name]
            else:
                self._lanes[name] = _Lane(name, transports[name], self.limit)
        self.config = config
        self._unknown.clear()
        log.info("notification routes reloaded: %d target(s)", len(config.targets))

    async def close(self) -> None:
        """Deliver what is queued (for at most `DRAIN_SECONDS`), then stop."""
        lanes = [lane for lane in self._lanes.values() if lane.task is not None and lane.queue is not None]
        if lanes:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(
                    asyncio.gather(*(lane.queue.join() for lane in lanes if lane.queue is not None)),
                    DRAIN_SECONDS,
                )
        for lane in lanes:
            if lane.task is not None:
                lane.task.cancel()
        await asyncio.gather(*(lane.task for lane in lanes if lane.task is not None), return_exceptions=True)
        for lane in self._lanes.values():
            lane.task = None
            lane.queue = None
