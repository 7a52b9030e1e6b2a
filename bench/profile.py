"""`--profile DIR`: tally's web and worker under `py-spy record` during tally's measured rounds.

One py-spy per process group (gunicorn's master, the worker's main process, each with
`--subprocesses`) is started before a round and stopped after it, writing collapsed stacks
(`--format raw`). After the run, each scenario's rounds are added up per process group into
`SCENARIO.GROUP.txt` (collapsed stacks: one line per stack and its sample count, to sum per
step) and drawn as `SCENARIO.GROUP.svg` (bench.flamegraph). The baseline's rounds are not
recorded. Idle threads are not sampled (py-spy's default), so a process waiting for work adds
nothing; `--nonblocking` keeps py-spy from pausing the processes it samples.
"""

import re
import signal
import subprocess
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from bench.flamegraph import render
from bench.processes import Stack
from devstack.processes import BIN

GROUPS = ("web", "worker")  # tally's process groups, by their names in the Stack
RATE = 100  # samples per second
STOP_TIMEOUT = 30
# py-spy names each process frame `process PID:"COMMAND LINE"` (a line that may span lines):
# the same program under another pid (a worker restarted, a pool child replaced) is one frame.
_PROCESS_FRAME = re.compile(r'process \d+:"([^"]*)"')


@dataclass
class Profiler:
    directory: Path
    stack: Stack
    _recorded: dict[tuple[str, str], list[Path]] = field(default_factory=dict)

    @contextmanager
    def recording(self, scenario: str, side: str) -> Iterator[None]:
        """py-spy on each running tally process group while the block runs."""
        raw = self.directory / "raw"
        raw.mkdir(parents=True, exist_ok=True)
        spies = []
        for group in GROUPS:
            process = self.stack.processes.get(group)
            if process is None:
                continue
            name = f"{scenario}.{side}" if side != "tally" else scenario
            paths = self._recorded.setdefault((name, group), [])
            output = raw / f"{name}.{group}.{len(paths)}.txt"
            paths.append(output)
            spies.append(_spy(process.popen.pid, output, raw / f"{output.stem}.log"))
        try:
            yield
        finally:
            for spy in spies:
                spy.send_signal(signal.SIGINT)  # py-spy writes its output on SIGINT
            for spy in spies:
                spy.wait(timeout=STOP_TIMEOUT)

    def write(self) -> list[Path]:
        """Add up each scenario's rounds per process group; the SVGs written."""
        written = []
        for (name, group), paths in sorted(self._recorded.items()):
            stacks = merge(paths)
            if not stacks:
                continue  # that group did nothing in these rounds (web while settling)
            collapsed = self.directory / f"{name}.{group}.txt"
            collapsed.write_text("".join(f"{s} {n}\n" for s, n in stacks.most_common()))
            svg = self.directory / f"{name}.{group}.svg"
            svg.write_text(render(stacks, title=f"tally {group}: {name}"))
            written.append(svg)
        return written


def _spy(pid: int, output: Path, log: Path) -> subprocess.Popen[bytes]:
    argv = [str(BIN / "py-spy"), "record", "--pid", str(pid), "--subprocesses"]
    argv += ["--nonblocking", "--rate", str(RATE), "--format", "raw", "--output", str(output)]
    return subprocess.Popen(
        argv, stdin=subprocess.DEVNULL, stdout=log.open("ab"), stderr=subprocess.STDOUT
    )


def merge(paths: list[Path]) -> Counter[str]:
    """Collapsed stacks of several recordings added up (a missing file adds nothing)."""
    stacks: Counter[str] = Counter()
    for path in paths:
        if not path.exists():
            continue
        text = _PROCESS_FRAME.sub(_program, path.read_text())
        for line in text.splitlines():
            stack, _, count = line.rpartition(" ")
            if stack and count.isdigit():
                stacks[stack] += int(count)
    return stacks


def _program(frame: re.Match[str]) -> str:
    """`process "gunicorn config.wsgi"`: the program's name and first argument, no pid."""
    words = [word.rsplit("/", 1)[-1] for word in frame.group(1).split()[:2]]
    return f'process "{" ".join(words) or "?"}"'
