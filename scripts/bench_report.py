"""Write what a benchmark script printed into docs/performance.md, one section per script.

A bench script ends with ``bench_report.run(main, "bench_loss", "title")`` instead of
``main()``. Without ``--report PATH`` on its command line that is ``main()``. With it, the
script's standard output still goes to the terminal and is also written to PATH as the
section ``name``: a heading, the command (without ``--report``), the date, the machine
(CPU model, cores, torch version, ATen CPU capability, GPU if one is used) and the load
average before and after (a shared machine shows it there), then the printed tables.
A section lies between ``<!-- bench:NAME -->`` and ``<!-- /bench:NAME -->``; writing one
replaces it in place or appends it, and leaves everything else in the file as it was (the
other scripts' sections, the page's own text), so running one script never erases
another's figures. Nothing is written when the script fails.

    python scripts/bench_loss.py --threads 1 --clock cpu --report docs/performance.md
"""

from __future__ import annotations

import argparse
import datetime as dt
import io
import os
import platform
import shlex
import sys
from collections.abc import Callable
from pathlib import Path

import torch

HEADER = """# Performance

Written by `make bench` (`scripts/bench_*.py --report docs/performance.md`): each section
below is replaced by its script when it runs, with the machine, the date and the load
average it ran under; do not edit inside the marked sections by hand. Every ratio is
measured side by side in one process (interleaved repeats, the median of per-repeat
ratios), so a busy neighbour slows all candidates alike, while absolute times move with the
load.
"""


def begin_marker(name: str) -> str:
    return f"<!-- bench:{name} -->"


def end_marker(name: str) -> str:
    return f"<!-- /bench:{name} -->"


def cpu_model() -> str:
    """The CPU's model name as the kernel reports it (platform's guess elsewhere)."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown CPU"


def machine(device: str | None = None) -> str:
    """One line: CPU model and cores, torch and its CPU kernels, the GPU when one is used."""
    capability = torch.backends.cpu.get_cpu_capability()
    forced = os.environ.get("ATEN_CPU_CAPABILITY")
    kernels = f"{capability} (ATEN_CPU_CAPABILITY={forced})" if forced else capability
    text = (
        f"{cpu_model()}, {os.cpu_count()} logical cores, torch {torch.__version__}, "
        f"CPU capability {kernels}, Python {platform.python_version()}"
    )
    if device == "cuda" and torch.cuda.is_available():
        text += f", GPU {torch.cuda.get_device_name()}"
    return text


def load_average() -> str:
    try:
        return "/".join(f"{x:.1f}" for x in os.getloadavg())
    except OSError:  # not every platform has one
        return "n/a"


def to_markdown(printed: str) -> str:
    """The scripts' ``# ...`` comment lines become text (a markdown heading otherwise)."""
    lines = [line[2:] if line.startswith("# ") else line for line in printed.splitlines()]
    return "\n".join(lines).strip() + "\n"


def section(name: str, title: str, command: str, started: dt.datetime, body: str, **facts) -> str:
    ended = dt.datetime.now(dt.timezone.utc)
    when = f"{started:%Y-%m-%d %H:%M}-{ended:%H:%M} UTC"
    lines = [
        begin_marker(name),
        f"## {title}",
        "",
        f"`{command}`, {when}.",
        f"Machine: {facts['machine']}.",
        f"Load average (1/5/15 min) {facts['load_before']} before, {facts['load_after']} after"
        f" the run, on {os.cpu_count()} cores: a load near or above the core count means other"
        " jobs shared the machine.",
        "",
        body.rstrip(),
        end_marker(name),
    ]
    return "\n".join(lines) + "\n"


def write_section(path: Path, name: str, text: str) -> None:
    """Replace section ``name`` of ``path`` by ``text`` (which carries its markers), or
    append it; create the file with the page's header if it does not exist."""
    path = Path(path)
    old = path.read_text() if path.exists() else HEADER
    begin, end = begin_marker(name), end_marker(name)
    start = old.find(begin)
    if start >= 0:
        stop = old.find(end, start)
        if stop < 0:
            raise ValueError(f"{path}: {begin} has no {end}; fix the file by hand")
        new = old[:start] + text.rstrip("\n") + old[stop + len(end) :]
    else:
        new = old.rstrip("\n") + "\n\n" + text
    path.parent.mkdir(parents=True, exist_ok=True)
    staged = path.with_name(path.name + ".partial")
    staged.write_text(new)
    os.replace(staged, path)


class _Tee(io.TextIOBase):
    """Writes to the terminal and keeps a copy."""

    def __init__(self, stream) -> None:
        self.stream, self.copy = stream, io.StringIO()

    def write(self, text: str) -> int:
        self.copy.write(text)
        return self.stream.write(text)

    def flush(self) -> None:
        self.stream.flush()


def _device(args: list[str]) -> str:
    """The device the script will use: its --device, else its default (CUDA if present)."""
    parser = argparse.ArgumentParser(add_help=False)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    return parser.parse_known_args(args)[0].device


def run(main: Callable[[], None], name: str, title: str) -> None:
    """Run a bench script's ``main``; with ``--report PATH`` also write its section."""
    parser = argparse.ArgumentParser(add_help=False)
    parser.add_argument("--report", type=Path, default=None)
    known, rest = parser.parse_known_args(sys.argv[1:])
    if known.report is None:
        main()
        return
    script = Path(sys.argv[0]).as_posix()
    script = script[script.index("scripts/") :] if "scripts/" in script else script
    command = shlex.join(["python", script, *rest])
    sys.argv = [sys.argv[0], *rest]
    device = _device(rest)
    facts = {"machine": machine(device), "load_before": load_average()}
    started = dt.datetime.now(dt.timezone.utc)
    tee = _Tee(sys.stdout)
    sys.stdout = tee
    try:
        main()
    finally:
        sys.stdout = tee.stream
    facts["load_after"] = load_average()
    body = to_markdown(tee.copy.getvalue())
    write_section(known.report, name, section(name, title, command, started, body, **facts))
    print(f"wrote section '{name}' of {known.report}")
