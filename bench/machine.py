"""What a benchmark ran on, so that its numbers can be written down with the machine and date."""

from __future__ import annotations

import os
import platform
import subprocess
from datetime import UTC, datetime
from pathlib import Path


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
