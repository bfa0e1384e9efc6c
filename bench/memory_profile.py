"""Where the operator's memory goes, per live grant.

    python bench/memory_profile.py --grants 2000 [--target sim|envtest] [--tracemalloc 12]

1. The operator (in a process of its own, this file's `child` mode: `run_operator` as `zsp run
   --dev` runs it, plus a reporter) starts on a cluster with no grants: RSS idle.
2. The operator stops; N bind-mode grants are made as the operator would have made them
   (bench/scale_bench.py's WorldBuilder), all of them live for 10-30 minutes.
3. The operator starts again and lists them; once its view, watch cache and request cache hold
   every grant and it has settled: RSS with N grants.
4. Every grant is ended (`spec.done: true` on its request); once the last TaskGrant is gone and
   10 s went by: RSS after.

With `--tracemalloc DEPTH` the operator traces its allocations; each report groups the live
bytes by owner: the innermost frame of the allocation's traceback that is not the standard
library, aiohttp, yarl, multidict, json or pydantic's own code (so a dict `json.loads` made for
kopf is kopf's, a model `model_validate` made for view.py is view.py's). The difference between
the loaded and the idle report, divided by N, is the per-grant cost of each owner. Tracing slows
the operator several times and costs memory of its own: RSS figures come from the run without it.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import json
import os
import random
import sys
import time
import tracemalloc
from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ceiling import in_parallel, say
from lifecycle_bench import TARGET, WORKERS
from scale_bench import Grant, WorldBuilder, build_world, clear_webhooks, scale_world
from targets import OperatorProcess, Target, operator_identity, target

from zsp_operator.core import constants as c
from zsp_operator.core.models import AccessPolicy
from zsp_operator.kube import AlreadyExists, Kube
from zsp_operator.kube.resources import ACCESS_REQUESTS, BY_KIND, ROLE_BINDINGS, TASK_GRANTS

HERE = Path(__file__).resolve()
# Frames that allocate on someone else's behalf: the owner is the first frame outside them.
_NOT_OWNERS = (
    "/json/",
    "/aiohttp/",
    "/yarl/",
    "/multidict/",
    "/pydantic/",
    "/pydantic_core/",
    "/asyncio/",
    "/typing.py",
    "/copy.py",
    "/collections/",
    "/contextlib.py",
    "/functools.py",
    "<frozen",
    "<unknown>",
)


# --- the operator with a reporter (child mode) ---------------------------------------------------


def _rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def _owner(frames: Sequence[tracemalloc.Frame]) -> str:
    """Who asked for the bytes: the innermost frame of our code or a library we call."""
    for frame in frames:  # innermost first (tracemalloc's order with most_recent_first)
        name = frame.filename
        if not any(part in name for part in _NOT_OWNERS):
            return _short(name) + f":{frame.lineno}"
    return _short(frames[0].filename) if frames else "?"


def _short(path: str) -> str:
    for marker in ("/zsp_operator/", "/site-packages/", "/lib/python3"):
        if marker in path:
            return (
                path.split(marker, 1)[1]
                if marker != "/zsp_operator/"
                else "zsp_operator/" + path.split(marker, 1)[1]
            )
    return path


def _traced() -> dict[str, list[int]]:
    """Live traced bytes and blocks by owner (file:line)."""
    snapshot = tracemalloc.take_snapshot().filter_traces(
        (tracemalloc.Filter(False, tracemalloc.__file__), tracemalloc.Filter(False, str(HERE)))
    )
    owners: dict[str, list[int]] = defaultdict(lambda: [0, 0])
    for stat in snapshot.statistics("traceback"):
        frames = list(reversed(stat.traceback))  # innermost first
        owner = _owner(frames)
        owners[owner][0] += stat.size
        owners[owner][1] += stat.count
    return dict(owners)


def _held(controller: Any) -> dict[str, list[int]]:
    """Bytes and objects reachable from each part of the engine, each object counted once, for
    the first part (in this order) that reaches it: who holds the memory, not who allocated it."""
    import types

    skip = (type, types.ModuleType, types.FunctionType, types.BuiltinFunctionType, types.MethodType)
    seen = {id(controller), id(controller.kube), id(controller.settings), id(asyncio.get_running_loop())}
    view = controller.view
    roots = {
        "view.grant_index (TaskGrants)": view.grant_index,
        "view (policies, namespaces, request -> grant)": view,
        "request_cache (AccessRequests)": controller.request_cache,
        "cache (RBAC objects, ServiceAccounts)": controller.cache,
        "observer (metrics, audit)": controller.observer,
        "grants (GrantService)": controller.grants,
        "status (StatusWriter)": controller.status,
        **{f"revoker.{name}": value for name, value in vars(controller.revoker).items()},
        "grant_tracker": controller.grant_tracker,
        "requests (reconciler)": controller.requests,
        "sweeper": controller.sweeper,
    }
    held: dict[str, list[Any]] = {}
    for name, root in roots.items():
        size = count = 0
        by_type: dict[str, int] = defaultdict(int)
        stack = [root]
        while stack:
            obj = stack.pop()
            if id(obj) in seen or isinstance(obj, skip):
                continue
            seen.add(id(obj))
            one = sys.getsizeof(obj)
            size += one
            by_type[type(obj).__qualname__] += one
            count += 1
            stack.extend(gc.get_referents(obj))
        top = sorted(by_type.items(), key=lambda x: -x[1])[:6]
        held[name] = [size, count, top]
    return held


def _big_buffers(limit: int = 5) -> list[str]:
    """The largest bytearrays and bytes, each with the chain of types that holds it."""
    found: list[tuple[int, Any, Any]] = []
    for holder in gc.get_objects():
        for obj in gc.get_referents(holder):
            if isinstance(obj, (bytearray, bytes)) and len(obj) > 65536:
                found.append((len(obj), obj, holder))
    found.sort(key=lambda x: -x[0])
    out = []
    for size, _, holder in found[:limit]:
        chain = [type(holder).__module__ + "." + type(holder).__qualname__]
        node = holder
        for _ in range(6):
            parents = [p for p in gc.get_referrers(node) if not isinstance(p, (list, type(sys._getframe())))]
            if not parents:
                break
            node = parents[0]
            chain.append(type(node).__module__ + "." + type(node).__qualname__)
        out.append(f"{size} held by " + " <- ".join(chain))
    out.append(f"total {sum(x[0] for x in found)} in {len(found)} buffers over 64 KiB")
    return out


def _pymalloc() -> dict[str, int]:
    """CPython's small-object allocator: its arenas, and the bytes in use and free within them."""
    import tempfile

    with tempfile.TemporaryFile() as out:
        saved = os.dup(2)
        try:
            os.dup2(out.fileno(), 2)
            sys._debugmallocstats()
        finally:
            os.dup2(saved, 2)
            os.close(saved)
        out.seek(0)
        text = out.read().decode(errors="replace")
    stats = {}
    for line in text.splitlines():
        name, _, value = line.partition("=")
        name, value = name.strip().rstrip(":"), value.strip().replace(",", "")
        kept = ("# arenas allocated current", "# bytes in allocated blocks", "# bytes in available blocks")
        if name.startswith(kept) and value.isdigit():
            stats[name.lstrip("# ")] = int(value)
    return stats


def _state(controller: Any) -> dict[str, Any]:
    from zsp_operator.engine.cache import CACHED

    return {
        "rss_mb": _rss_mb(),
        "started": controller.sweeper.running,
        "grants": len(controller.view.grants),
        "cache": {res.kind: sum(1 for _ in controller.cache.all(res)) for res in CACHED},
        "requests": len(controller.request_cache),
        "tasks": len(asyncio.all_tasks()),
    }


async def _reporter(controller: Any, directory: Path, probe: bool) -> None:
    ask = directory / "ask"
    while True:
        state = _state(controller)
        (directory / "state.tmp").write_text(json.dumps(state))
        (directory / "state.tmp").replace(directory / "state.json")
        if ask.exists():
            label = ask.read_text().strip()
            ask.unlink()
            # gc.get_objects() and get_referents() take references to objects another thread may be
            # building (kopf's diffs on the admission thread fail on a tuple so held): these run
            # only at the quiet moments a report is asked for, never while the world is changing.
            report = {"label": label, **state, "held": _held(controller), "buffers": _big_buffers()}
            report["gc_objects"] = len(gc.get_objects())
            report["pymalloc"] = _pymalloc()
            if probe:
                # How much of the RSS is free memory the C library kept: collect, trim, look again.
                from zsp_operator.engine.memory import release

                release("probe")
                report["rss_trimmed_mb"] = _rss_mb()
            if tracemalloc.is_tracing():
                report["traced"] = _traced()
                report["traced_total"] = tracemalloc.get_traced_memory()[0]
                if label == "loaded":
                    # CPython 3.11 tracing while the admission thread runs kopf's diffs can fail
                    # inside tuple building (SystemError): the end is measured without tracing.
                    tracemalloc.stop()
            out = directory / f"{label}.json"
            out.with_suffix(".tmp").write_text(json.dumps(report))
            out.with_suffix(".tmp").replace(out)
        await asyncio.sleep(0.5)


def child(args: argparse.Namespace) -> int:
    import logging

    if args.tracemalloc:
        tracemalloc.start(args.tracemalloc)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("kopf.objects").setLevel(logging.WARNING)
    from zsp_operator.engine.controller import Controller
    from zsp_operator.process.runner import run_operator
    from zsp_operator.settings import Settings

    settings = Settings(kubeconfig=args.kubeconfig, dev=True, webhook_port=0, metrics_port=0, health_port=0)

    async def main() -> None:
        kube = await Kube.connect(settings.kubeconfig, settings.context)
        controller = Controller.build(kube, settings)
        reporter = asyncio.create_task(_reporter(controller, Path(args.out), args.trim_probe))
        try:
            await run_operator(settings, kube=kube, controller=controller)
        finally:
            reporter.cancel()
            await kube.close()

    asyncio.run(main())
    return 0


class ProfiledOperator(OperatorProcess):
    """The operator as `child` mode of this file runs it: `zsp run --dev` plus the reporter."""

    def __init__(self, where: Target, tracing: int, probe: bool = False) -> None:
        super().__init__(where.kubeconfig, where.calls)
        self.tracing = tracing
        self.probe = probe
        self.out = self.log.parent / "reports"
        self.out.mkdir()

    def _launch(self, command: list[str]) -> None:
        config = command[command.index("--kubeconfig") + 1]
        mine = [sys.executable, str(HERE), "child", "--kubeconfig", config, "--out", str(self.out)]
        if self.tracing:
            mine += ["--tracemalloc", str(self.tracing)]
        if self.probe:
            mine += ["--trim-probe"]
        env = {
            **os.environ,
            "PYTHONPATH": os.pathsep.join([str(HERE.parent), os.environ.get("PYTHONPATH", "")]),
        }
        with self.log.open("wb") as out:
            import subprocess

            self._process = subprocess.Popen(mine, stdout=out, stderr=subprocess.STDOUT, env=env)

    def state(self) -> dict[str, Any]:
        try:
            return dict(json.loads((self.out / "state.json").read_text()))
        except (OSError, ValueError):
            return {}

    async def until(self, ready: Any, within: float) -> dict[str, Any]:
        deadline = time.monotonic() + within
        while time.monotonic() < deadline:
            if not self.alive:
                raise RuntimeError(self.failure())
            state = self.state()
            if state and ready(state):
                return state
            await asyncio.sleep(0.5)
        raise TimeoutError(f"the operator did not get there in {within:.0f}s: {self.state()}")

    async def report(self, label: str) -> dict[str, Any]:
        (self.out / "ask").write_text(label)
        path = self.out / f"{label}.json"
        while not path.exists():
            if not self.alive:
                raise RuntimeError(self.failure())
            await asyncio.sleep(0.2)
        return dict(json.loads(path.read_text()))


# --- the run -------------------------------------------------------------------------------------


def _settled(n: int) -> Any:
    def ready(state: dict[str, Any]) -> bool:
        cache = state.get("cache") or {}
        return bool(
            state.get("started")
            and state.get("grants") == n
            and cache.get("RoleBinding", 0) >= n
            and state.get("requests", 0) >= n
        )

    return ready


async def _rss_settled(operator: ProfiledOperator, seconds: float) -> float:
    """The highest RSS over the last few samples after `seconds` of quiet."""
    await asyncio.sleep(seconds)
    samples = []
    for _ in range(6):
        samples.append(operator.rss_mb() or 0.0)
        await asyncio.sleep(0.5)
    return max(samples)


async def profile(args: argparse.Namespace, where: Target) -> dict[str, Any]:
    result: dict[str, Any] = {"grants": args.grants}
    kubeconfig = where.kubeconfig
    async with await Kube.from_dict(kubeconfig(None)) as admin:
        await clear_webhooks(admin)
        for doc in scale_world():
            with contextlib.suppress(AlreadyExists):
                await admin.create(BY_KIND[doc["kind"]], doc)

    # 1. idle
    operator = ProfiledOperator(where, args.tracemalloc, args.trim_probe)
    try:
        await operator.start()
        await operator.until(_settled(0), args.timeout)
        result["idle_rss"] = await _rss_settled(operator, 5)
        result["idle"] = await operator.report("idle")
    finally:
        operator.stop()
    say(f"  idle: {result['idle_rss']:.0f} MB")

    # 2. the world
    async with await Kube.from_dict(kubeconfig(None)) as admin:
        await clear_webhooks(admin)
        policy = AccessPolicy.model_validate(next(d for d in scale_world() if d["kind"] == c.KIND_POLICY))
        labels = {
            d["metadata"]["name"]: d["metadata"].get("labels") or {}
            for d in scale_world()
            if d["kind"] == "Namespace"
        }
        token = await operator_identity(admin, where.calls)
        grants = [Grant(i, "later", f"mem-{i:05d}", f"worker-{i % WORKERS:02d}") for i in range(args.grants)]
        async with await Kube.from_dict(kubeconfig(token)) as op:
            world = await build_world(
                WorldBuilder(admin, op, policy, labels), grants, args.concurrency, 60, random.Random(7)
            )
        say(f"  world: {args.grants} grants in {world.seconds:.0f}s")

        # 3. loaded, 4. ended
        operator = ProfiledOperator(where, args.tracemalloc, args.trim_probe)
        peak = 0.0
        try:
            began = time.monotonic()
            await operator.start()

            async def sample() -> None:
                nonlocal peak
                while True:
                    peak = max(peak, operator.rss_mb() or 0.0)
                    await asyncio.sleep(0.25)

            sampler = asyncio.create_task(sample())
            await operator.until(_settled(args.grants), args.timeout)
            result["startup_s"] = time.monotonic() - began
            result["loaded_rss"] = await _rss_settled(operator, 35)  # after the post-start trim (30 s)
            result["loaded"] = await operator.report("loaded")
            result["loaded_peak"] = peak
            say(f"  loaded: {result['loaded_rss']:.0f} MB (peak {peak:.0f} MB) in {result['startup_s']:.0f}s")

            async def done(g: Grant) -> None:
                await admin.patch(ACCESS_REQUESTS, g.request, {"spec": {"done": True}}, TARGET)

            began = time.monotonic()
            await in_parallel(grants, done, args.concurrency)
            await operator.until(lambda s: s.get("grants") == 0 and s.get("requests") == 0, args.timeout)
            managed = f"{c.LABEL_MANAGED_BY}={c.OPERATOR_NAME}"
            while await admin.list(TASK_GRANTS, TARGET) or await admin.list(  # noqa: ASYNC110 - polls the server
                ROLE_BINDINGS, TARGET, label_selector=managed
            ):
                await asyncio.sleep(1)
            result["end_s"] = time.monotonic() - began
            result["ended_peak"] = peak
            result["ended_rss"] = await _rss_settled(operator, 10)
            result["ended"] = await operator.report("ended")
            sampler.cancel()
            say(f"  ended: {result['ended_rss']:.0f} MB ({result['end_s']:.0f}s to end them all)")
        finally:
            operator.stop()
    return result


def render(result: dict[str, Any], top: int) -> str:
    n = result["grants"]
    lines = [
        f"grants: {n}; start-up with them {result['startup_s']:.1f} s; ending them all {result['end_s']:.1f} s",
        f"RSS idle {result['idle_rss']:.0f} MB; with {n} grants {result['loaded_rss']:.0f} MB "
        f"(peak {result['loaded_peak']:.0f} MB); after they ended {result['ended_rss']:.0f} MB "
        f"(peak {result['ended_peak']:.0f} MB)",
        f"RSS per grant: {(result['loaded_rss'] - result['idle_rss']) * 1024 / n:.1f} KB",
    ]
    for label in ("idle", "loaded", "ended"):
        state = {k: v for k, v in result[label].items() if k not in ("traced", "label")}
        lines.append(f"{label}: {json.dumps(state)}")
    lines += [
        "",
        "| held by (reachable from) | bytes per grant, loaded - idle | objects per grant | after the end, per grant |",
        "|---|---:|---:|---:|",
    ]
    for name in result["ended"]["held"]:
        base = result["idle"]["held"].get(name, [0, 0])
        size, count = result["loaded"]["held"].get(name, [0, 0])[:2]
        after = result["ended"]["held"].get(name, [0, 0])
        if max(size - base[0], after[0] - base[0]) < n * 16:
            continue
        lines.append(
            f"| {name} | {(size - base[0]) / n:,.0f} | {(count - base[1]) / n:.1f} | {(after[0] - base[0]) / n:,.0f} |"
        )
    if "traced" not in result["loaded"]:
        return "\n".join(lines)
    idle, loaded = result["idle"]["traced"], result["loaded"]["traced"]
    total = (result["loaded"]["traced_total"] - result["idle"]["traced_total"]) / n
    lines.append(f"traced Python memory per grant: {total / 1024:.1f} KB (loaded - idle) / N")
    by_file: dict[str, float] = defaultdict(float)
    for owner, (size, _) in loaded.items():
        by_file[owner.rsplit(":", 1)[0]] += size - 0
    for owner, (size, _) in idle.items():
        by_file[owner.rsplit(":", 1)[0]] -= size
    lines.append("")
    lines.append("| owner (file) | bytes per grant, loaded - idle |")
    lines.append("|---|---:|")
    for name, size in sorted(by_file.items(), key=lambda x: -x[1])[:top]:
        lines.append(f"| {name} | {size / n:,.0f} |")
    lines.append("")
    lines.append("| owner (file:line) | bytes per grant, loaded - idle | blocks per grant |")
    lines.append("|---|---:|---:|")
    diff = {k: v[0] - idle.get(k, [0, 0])[0] for k, v in loaded.items()}
    for owner, size in sorted(diff.items(), key=lambda x: -x[1])[:top]:
        blocks = loaded[owner][1] - idle.get(owner, [0, 0])[1]
        lines.append(f"| {owner} | {size / n:,.0f} | {blocks / n:.1f} |")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    sub = parser.add_subparsers(dest="mode")
    run = sub.add_parser("run", help="the profile (the default)")
    for p in (parser, run):
        p.add_argument("--grants", type=int, default=2000)
        p.add_argument("--target", default="sim", help="sim or envtest (KUBEBUILDER_ASSETS)")
        p.add_argument(
            "--tracemalloc", type=int, default=0, metavar="DEPTH", help="trace allocations, frames kept"
        )
        p.add_argument("--concurrency", type=int, default=32)
        p.add_argument("--timeout", type=float, default=900)
        p.add_argument("--top", type=int, default=30)
        p.add_argument("--json", help="also write the raw reports here")
        p.add_argument("--trim-probe", action="store_true", help="at each report, trim and measure RSS again")
    kid = sub.add_parser("child", help="internal: the operator with its reporter")
    kid.add_argument("--kubeconfig", required=True)
    kid.add_argument("--out", required=True)
    kid.add_argument("--tracemalloc", type=int, default=0)
    kid.add_argument("--trim-probe", action="store_true")
    args = parser.parse_args(argv)
    if args.mode == "child":
        return child(args)
    with target(args.target) as where:
        say(f"memory profile on {where.name}")
        result = asyncio.run(profile(args, where))
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=1))
    print(render(result, args.top))
    return 0


if __name__ == "__main__":
    sys.exit(main())
