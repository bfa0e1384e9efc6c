"""What a benchmark ran on, so that its numbers can be written down with the machine and date."""

from __future__ import annotations

import contextlib
import os
import platform
import subprocess
import time
from collections.abc import Mapping
from datetime import UTC, datetime
from pathlib import Path

TICK = os.sysconf("SC_CLK_TCK")
CPUS = os.cpu_count() or 1
# Process names in /proc/PID/comm (15 characters at most) -> what the reports call them.
_CONTROL_PLANE = {
    "kube-apiserver": "kube-apiserver",
    "etcd": "etcd",
    "kube-controller": "kube-controller-manager",
}
THIS = "this benchmark"


def _read(path: str) -> str:
    try:
        return Path(path).read_text(encoding="utf-8")
    except OSError:
        return ""


def cpu_model() -> str:
    for line in _read("/proc/cpuinfo").splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.processor() or "unknown"


def cores() -> int:
    """What `nproc` prints: the CPUs this process may run on."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count() or 1


def memory() -> str:
    for line in _read("/proc/meminfo").splitlines():
        if line.startswith("MemTotal:"):
            return f"{int(line.split()[1]) / 1024 / 1024:.1f} GiB"
    return "unknown"


def os_name() -> str:
    for line in _read("/etc/os-release").splitlines():
        if line.startswith("PRETTY_NAME="):
            return line.split("=", 1)[1].strip('"')
    return platform.platform()


def load() -> str:
    parts = _read("/proc/loadavg").split()
    return " ".join(parts[:3]) if parts else "unknown"


def git_commit() -> str:
    try:
        result = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],
            capture_output=True,
            text=True,
            check=False,
            cwd=Path(__file__).resolve().parent,
        )
    except OSError:
        return "unknown"
    return result.stdout.strip() or "unknown"


def _package_root() -> str:
    try:
        import zsp_operator
    except ImportError:
        return "nowhere"
    return str(Path(zsp_operator.__file__).resolve().parents[1])


def control_plane() -> dict[str, int]:
    """The PIDs of the control plane this process started (envtest's: its descendants), by name."""
    parents: dict[int, int] = {}
    names: dict[int, str] = {}
    for proc in Path("/proc").iterdir():
        if proc.name.isdigit():
            with contextlib.suppress(OSError, ValueError):
                stat = (proc / "stat").read_text()
                parents[int(proc.name)] = int(stat.rpartition(")")[2].split()[1])
                names[int(proc.name)] = (proc / "comm").read_text().strip()
    found = {}
    for pid, name in names.items():
        if name not in _CONTROL_PLANE:
            continue
        ancestor = parents.get(pid, 0)
        while ancestor > 1 and ancestor != os.getpid():
            ancestor = parents.get(ancestor, 0)
        if ancestor == os.getpid():
            found[_CONTROL_PLANE[name]] = pid
    return found


def process_cpu(pid: int | None) -> float | None:
    """User and system CPU seconds of a process so far, from /proc/PID/stat."""
    if pid is None:
        return None
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / TICK


def machine_cpu() -> tuple[float, float]:
    """Busy and total CPU seconds of the machine so far (all cores), from /proc/stat."""
    ticks = [int(x) for x in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    idle = ticks[3] + ticks[4]
    return (sum(ticks) - idle) / TICK, sum(ticks) / TICK


def cpu_times(pids: Mapping[str, int | None]) -> dict[str, float]:
    """CPU seconds so far of each named process still there, and of this one (`THIS`)."""
    found = {name: process_cpu(pid) for name, pid in pids.items()}
    times = {name: used for name, used in found.items() if used is not None}
    times[THIS] = time.process_time()
    return times


def cpu_spent(before: Mapping[str, float], after: Mapping[str, float]) -> dict[str, float]:
    """CPU seconds each process spent between two `cpu_times`."""
    return {name: after[name] - before[name] for name in after if name in before}


def cpu_per_item(spent: Mapping[str, float], n: int) -> str:
    """'kube-apiserver 4.1 ms, etcd 1.0 ms, ...': CPU per item, largest first."""
    ordered = sorted(spent.items(), key=lambda item: -item[1])
    return ", ".join(f"{name} {seconds / max(n, 1) * 1000:.1f} ms" for name, seconds in ordered)


def describe() -> str:
    """One Markdown list: date, CPU, cores, memory, Python, OS, load average, commit."""
    return "\n".join(
        [
            f"- date: {datetime.now(UTC).strftime('%a %b %d %H:%M:%S UTC %Y')}",
            f"- CPU: {cpu_model()}, {cores()} cores (nproc)",
            f"- memory: {memory()}",
            f"- Python {platform.python_version()} ({platform.python_implementation()})",
            f"- OS: {os_name()}, kernel {platform.release()}",
            f"- load average at start (1/5/15 min): {load()}",
            f"- commit: {git_commit()} (zsp_operator imported from {_package_root()})",
        ]
    )


if __name__ == "__main__":
    print(describe())
