"""Helpers shared by the load benchmarks' Python reports (report.py and
contextforge/mcp_helper.py): the key=value files the shell scripts write,
the machine line, and ratios."""
import os
import platform
from pathlib import Path


def read_env(path):
    values = {}
    if path.exists():
        for line in path.read_text().splitlines():
            key, sep, value = line.partition("=")
            if sep:
                values[key] = value
    return values


def ratio(a, b):
    return "–" if not a or not b else f"{a / b:.2f}"


def machine():
    model = "?"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem = "?"
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                mem = f"{int(line.split()[1]) / 1024 / 1024:.0f} GiB"
    except (OSError, ValueError, IndexError):
        pass
    return f"{os.cpu_count()} CPUs (nproc), {model}, {mem} RAM, {platform.system()} {platform.release()}"
