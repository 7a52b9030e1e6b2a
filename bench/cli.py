"""`python -m bench`: set up the stack, run the chosen scenarios, print the table.

Exit status: 0 when every scenario was exact, 1 when one lost or doubled a payment, 2 when the
bench could not run (bad flags, a process that died, another bench holding the stack).
"""

import argparse
import fcntl
import os
import platform
import shutil
import signal
import sys
import tempfile
import time
import traceback
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from types import FrameType
from typing import Any

from bench.environment import (
    DATABASE_NAME,
    REDIS_DB,
    REDIS_URL,
    configure_this_process,
    process_environment,
)
from bench.processes import Stack, WebConfig, free_ports
from bench.report import Console, ScenarioResult, latency_table, table, to_json, write_json

LOCK_PATH = Path(tempfile.gettempdir()) / "tally-bench.lock"
LOCK_WAIT_SECONDS = 600.0
BUSY_WARNING = 0.25  # share of the CPU other work may use before the figures are doubtful
ORDER = ("client", "ingest", "settle", "settle32", "storm", "e2e", "latency", "metrics")
# client (the load client against wrk, once), settle32 (32 settling transactions at once) and
# metrics (seeds a million deliveries, about a minute) are asked for by name.
DEFAULT_SCENARIOS = ("ingest", "settle", "storm", "e2e", "latency")


class BenchUnavailable(Exception):
    """The bench cannot run now; the message says why."""


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m bench",
        description="tally's throughput and latency next to bare baselines, on real processes.",
    )
    parser.add_argument(
        "--payments",
        type=int,
        default=3000,
        help="payments per measured round (settle, end to end; 3 rounds a side, after an "
        "untimed warm-up); ingest posts three times as many requests a round",
    )
    parser.add_argument("--connections", type=int, default=16, help="concurrent client connections")
    parser.add_argument(
        "--duration", type=float, default=None, help="cap on each measured round, in seconds"
    )
    # 4: on 2 cores tally's settle rate was the same at 2, 4 and 8 (CPU-bound); the baseline
    # gained from 2 to 4 and little beyond.
    parser.add_argument(
        "--worker-concurrency", type=int, default=4, help="prefork children of the worker"
    )
    parser.add_argument("--web-workers", type=int, default=WebConfig.workers, help="gunicorn")
    parser.add_argument("--web-threads", type=int, default=WebConfig.threads, help="gunicorn")
    parser.add_argument(
        "--scenarios",
        default=",".join(DEFAULT_SCENARIOS),
        help=f"comma list of {', '.join(ORDER)} (always run in that order)",
    )
    parser.add_argument(
        "--metrics-rows",
        type=int,
        default=1_000_000,
        help="deliveries in the large log of the metrics scenario (the small one has 1,000)",
    )
    parser.add_argument(
        "--batch-size",
        type=int,
        default=32,
        help="SETTLE_BATCH_SIZE of tally's batched rows (settle, settle32, e2e, latency); "
        "1 leaves them out",
    )
    parser.add_argument(
        "--latency-seconds",
        type=float,
        default=10.0,
        help="how long each offered load of the latency scenario lasts",
    )
    parser.add_argument(
        "--profile",
        type=Path,
        default=None,
        metavar="DIR",
        help="run tally's web and worker under py-spy in its measured rounds; flame graphs here",
    )
    parser.add_argument(
        "--chart",
        type=Path,
        default=None,
        metavar="FILE",
        help="draw the latency scenario's throughput and p99 by offered load here (SVG)",
    )
    parser.add_argument("--json", type=Path, default=None, metavar="FILE", help="write figures")
    parser.add_argument(
        "--logs", type=Path, default=None, metavar="DIR", help="keep the processes' logs here"
    )
    args = parser.parse_args(argv)
    chosen = [name.strip() for name in args.scenarios.split(",") if name.strip()]
    unknown = sorted(set(chosen) - set(ORDER))
    if unknown or not chosen:
        parser.error(f"--scenarios: unknown {', '.join(unknown) or 'nothing chosen'}")
    args.scenarios = [name for name in ORDER if name in chosen]
    for name in (
        "payments",
        "connections",
        "worker_concurrency",
        "web_workers",
        "web_threads",
        "metrics_rows",
        "batch_size",
    ):
        if getattr(args, name) < 1:
            parser.error(f"--{name.replace('_', '-')} must be at least 1")
    if args.duration is not None and args.duration <= 0:
        parser.error("--duration must be positive")
    if args.latency_seconds <= 0:
        parser.error("--latency-seconds must be positive")
    if args.chart is not None and "latency" not in args.scenarios:
        parser.error("--chart draws the latency scenario: add it to --scenarios")
    return args


@contextmanager
def exclusive_run(console: Console, *, wait: float = LOCK_WAIT_SECONDS) -> Iterator[None]:
    """One bench at a time on a machine: each drops and recreates the same database.

    A second bench (a colleague's, or the test suite's smoke run) waits a while for the first
    to finish rather than failing at once, and gives up with a message after `wait` seconds.
    """
    with LOCK_PATH.open("a+") as lock:
        deadline = time.monotonic() + wait
        waiting = False
        while True:
            try:
                fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    raise BenchUnavailable(
                        f"another bench is still running after {wait:g} s (it holds "
                        f"{LOCK_PATH}); it owns {DATABASE_NAME} and Redis db {REDIS_DB}"
                    ) from None
                if not waiting:
                    console.note("another bench is running; waiting for it to finish")
                    waiting = True
                time.sleep(0.5)
        yield


def busy_share(seconds: float = 1.0) -> float:
    """How much of the CPU other work uses now (0..1), from /proc/stat over `seconds`.

    Not the load average: that still counts the previous bench's processes for minutes.
    """

    def sample() -> tuple[int, int]:
        with open("/proc/stat") as stat:
            fields = [int(value) for value in stat.readline().split()[1:]]
        idle = fields[3] + fields[4]  # idle + iowait
        return sum(fields), idle

    try:
        total_before, idle_before = sample()
        time.sleep(seconds)
        total_after, idle_after = sample()
    except OSError:  # not Linux: no warning
        return 0.0
    total = total_after - total_before
    return 1 - (idle_after - idle_before) / total if total else 0.0


def _exit_on_sigterm(signum: int, frame: FrameType | None) -> None:
    raise SystemExit(128 + signum)  # unwind, so the processes are stopped on the way out


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    console = Console()
    signal.signal(signal.SIGTERM, _exit_on_sigterm)
    if args.logs is not None:
        args.logs.mkdir(parents=True, exist_ok=True)
    workdir = args.logs or Path(tempfile.mkdtemp(prefix="tally-bench-"))
    try:
        with exclusive_run(console):
            busy = busy_share()
            if busy > BUSY_WARNING:
                console.note(
                    f"other work is using {busy:.0%} of the CPU right now: "
                    "figures will be low and noisy"
                )
            started = time.monotonic()
            results, meta = run(args, console, workdir)
            meta["seconds"] = round(time.monotonic() - started, 1)
            meta["machine"]["cpu_busy_before"] = round(busy, 3)
    except BenchUnavailable as exc:
        console.note(str(exc))
        return 2
    except RuntimeError as exc:
        console.note(f"the bench failed: {exc}\nprocess logs are in {workdir}")
        return 2
    except Exception:  # anything else is a bug in the bench or in tally: show where
        console.note(f"the bench failed; process logs are in {workdir}")
        traceback.print_exc()
        return 2
    sys.stdout.write(table(results) + "\n")
    latencies = latency_table(results)
    if latencies is not None:
        sys.stdout.write("\n" + latencies + "\n")
    sys.stdout.write(_footer(meta) + "\n")
    if args.json is not None:
        write_json(args.json, to_json(results, meta))
    if args.chart is not None:
        _write_chart(args.chart, results, meta)
    if args.logs is None:
        shutil.rmtree(workdir, ignore_errors=True)
    inexact = [result.title for result in results if not result.exact]
    if inexact:
        console.note(f"NOT EXACT: {', '.join(inexact)}")
        return 1
    return 0


def run(
    args: argparse.Namespace, console: Console, workdir: Path
) -> tuple[list[ScenarioResult], dict[str, Any]]:
    ports = free_ports()
    metrics_dir = workdir / "metrics"
    shutil.rmtree(metrics_dir, ignore_errors=True)
    metrics_dir.mkdir()
    env = process_environment(ports, metrics_dir)
    web = WebConfig(workers=args.web_workers, threads=args.web_threads)
    console.step(f"fresh database {DATABASE_NAME}, Redis db {REDIS_DB}")
    _fresh_stores()
    configure_this_process(env)
    # Django is set up only now: these import tally's models and Celery app.
    from bench.database import create_baseline_tables, migrate
    from bench.harness import Bench, Options, Sandbox
    from bench.profile import Profiler
    from bench.scenarios import SCENARIOS

    migrate(env)
    create_baseline_tables()
    stack = Stack(workdir=workdir, env=env, ports=ports)
    try:
        console.step("starting sandbox and gunicorn (tally and baseline)")
        webs = {
            "web": stack.web("web", port=ports.web, config=web),
            "baseline-web": stack.web(
                "baseline-web",
                port=ports.baseline_web,
                config=web,
                DJANGO_SETTINGS_MODULE="bench.baseline_settings",
            ),
        }
        stack.sandbox()
        for name, url in webs.items():
            stack.wait_for_web(name, url)
        options = Options(
            payments=args.payments,
            connections=args.connections,
            duration=args.duration,
            worker_concurrency=args.worker_concurrency,
            metrics_rows=args.metrics_rows,
            batch_size=args.batch_size,
            latency_seconds=args.latency_seconds,
            profile=args.profile,
        )
        profiler = Profiler(args.profile, stack) if args.profile is not None else None
        bench = Bench(
            stack=stack,
            options=options,
            console=console,
            sandbox=Sandbox(stack.ports.sandbox_url),
            profiler=profiler,
        )
        results: list[ScenarioResult] = []
        scenario_seconds: dict[str, float] = {}
        for name in args.scenarios:
            began = time.monotonic()
            results.extend(SCENARIOS[name](bench))
            scenario_seconds[name] = round(time.monotonic() - began, 1)
        if profiler is not None:
            console.step(f"writing flame graphs into {args.profile}")
            profiler.write()
        console.step("done")
    finally:
        stack.stop_all()
    meta = {
        "machine": {
            "nproc": os.cpu_count(),
            "python": platform.python_version(),
            "platform": platform.platform(),
        },
        "options": {
            "payments": args.payments,
            "connections": args.connections,
            "duration": args.duration,
            "worker_concurrency": args.worker_concurrency,
            "batch_size": args.batch_size,
            "latency_seconds": args.latency_seconds,
            "profile": str(args.profile) if args.profile is not None else None,
            "scenarios": args.scenarios,
        },
        "web": {"workers": web.workers, "threads": web.threads},
        "scenario_seconds": scenario_seconds,
    }
    return results, meta


def _fresh_stores() -> None:
    """Empty database and Redis db, after making sure nothing else is using them.

    A process still connected to Redis db 14 (a stray worker) would take messages meant for
    this run's worker, and its work would show up as lost payments.
    """
    import redis

    from bench.database import recreate_database

    client = redis.Redis.from_url(REDIS_URL)
    try:
        me = str(client.client_id())
        strangers = [
            c for c in client.client_list() if str(c.get("db")) == REDIS_DB and c.get("id") != me
        ]
        if strangers:
            who = ", ".join(f"{c.get('addr')} ({c.get('name') or 'unnamed'})" for c in strangers)
            raise BenchUnavailable(f"something else is connected to Redis db {REDIS_DB}: {who}")
        recreate_database()
        client.flushdb()
    finally:
        client.close()


def _write_chart(path: Path, results: list[ScenarioResult], meta: dict[str, Any]) -> None:
    from bench.chart import Series, render

    options, machine = meta["options"], meta["machine"]
    series = [
        Series(result.title.removeprefix("settle latency "), result.details["levels"])
        for result in results
        if result.details.get("levels")
    ]
    caption = (
        f"python -m bench, {time.strftime('%Y-%m-%d')}: {machine['nproc']} cores, worker "
        f"prefork x{options['worker_concurrency']}, {options['latency_seconds']:g} s per load"
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(render(series, caption=caption))


def _footer(meta: dict[str, Any]) -> str:
    machine, options, web = meta["machine"], meta["options"], meta["web"]
    return (
        f"{machine['nproc']} cores, Python {machine['python']}; gunicorn {web['workers']} "
        f"workers x {web['threads']} threads; worker prefork x{options['worker_concurrency']}; "
        f"{options['payments']} payments a round, batched K={options['batch_size']}, "
        f"{options['connections']} connections; "
        f"{meta['seconds']:g} s in all"
    )
