"""A small keep-alive HTTP/1.1 load client on asyncio streams.

Why not threads with `requests`: on 2 cores the client shares the CPU with gunicorn,
PostgreSQL and Redis, and `requests` spends more CPU per call than the Django view it measures.
Here a request is one pre-rendered `write` and a response is a header scan plus one read, so
the client stays a small fraction of one core (docs/benchmark.md, "The load client").

Closed loop: each of `connections` connections sends its next request as soon as the previous
answer is read, taking work from one shared list in order. Sending N copies of a delivery
next to each other in that list therefore puts them in flight at the same moment on N
different connections.

Open loop, with a `schedule`: request i is sent `schedule[i]` seconds after the start (or as
soon as a connection is free after that), whatever the answers before it took: load offered
at a fixed rate, as payers do, rather than as fast as the server answers.
"""

import asyncio
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

NOT_ANSWERED = 0  # status recorded for a request that got no HTTP answer


def percentile_ms(latencies: list[float], percentile: float) -> float:
    """Nearest-rank percentile of latencies in seconds, in milliseconds (NaN when empty)."""
    if not latencies:
        return math.nan
    ordered = sorted(latencies)
    rank = max(math.ceil(percentile / 100 * len(ordered)) - 1, 0)
    return ordered[rank] * 1000


@dataclass
class LoadResult:
    statuses: list[int]  # per request, in order; NOT_ANSWERED when it failed or was not sent
    latencies: list[float] = field(default_factory=list)  # seconds, answered requests only
    failures: int = 0  # requests that got no answer at all (refused, reset, cut short)
    error_samples: list[str] = field(default_factory=list)  # the first few failures, to show
    started: float = 0.0  # perf_counter before the first write
    finished: float = 0.0  # perf_counter after the last answer
    client_cpu: float = 0.0  # CPU seconds the client itself used: is it the bottleneck?

    @property
    def sent(self) -> int:
        return len(self.latencies) + self.failures

    @property
    def answered_ok(self) -> int:
        return sum(1 for status in self.statuses if status == 200)

    @property
    def errors(self) -> int:
        """Requests sent that were not answered 200."""
        return self.sent - self.answered_ok

    @property
    def elapsed(self) -> float:
        return max(self.finished - self.started, 1e-9)

    @property
    def rate(self) -> float:
        """Answered requests per second."""
        return len(self.latencies) / self.elapsed

    def latency_ms(self, percentile: float) -> float:
        """Nearest-rank percentile of answered requests, in milliseconds."""
        return percentile_ms(self.latencies, percentile)

    def fail(self, exc: BaseException) -> None:
        self.failures += 1
        if len(self.error_samples) < 5:
            self.error_samples.append(f"{type(exc).__name__}: {exc}")


Progress = Callable[[int, int], None]


def run_load(
    host: str,
    port: int,
    requests: Sequence[bytes],
    *,
    connections: int,
    duration: float | None = None,
    progress: Progress | None = None,
    schedule: Sequence[float] | None = None,
) -> LoadResult:
    """Send every request (or as many as fit in `duration` seconds) over `connections`;
    with a `schedule` (seconds from the start, one per request), each not before its time."""
    if schedule is not None and len(schedule) != len(requests):
        raise ValueError("a schedule needs one time per request")
    return asyncio.run(_run(host, port, requests, connections, duration, progress, schedule))


async def _run(
    host: str,
    port: int,
    requests: Sequence[bytes],
    connections: int,
    duration: float | None,
    progress: Progress | None,
    schedule: Sequence[float] | None,
) -> LoadResult:
    result = LoadResult(statuses=[NOT_ANSWERED] * len(requests))
    next_index = 0
    cpu_before = time.process_time()
    result.started = time.perf_counter()
    deadline = result.started + duration if duration else math.inf

    def take() -> int | None:
        nonlocal next_index
        if next_index >= len(requests) or time.perf_counter() >= deadline:
            return None
        index, next_index = next_index, next_index + 1
        return index

    async def connection() -> None:
        reader: asyncio.StreamReader | None = None
        writer: asyncio.StreamWriter | None = None
        while (index := take()) is not None:
            if schedule is not None:
                await asyncio.sleep(result.started + schedule[index] - time.perf_counter())
            began = time.perf_counter()
            try:
                if writer is None:
                    reader, writer = await asyncio.open_connection(host, port)
                assert reader is not None
                writer.write(requests[index])
                status, close = await _read_response(reader)
            except (OSError, asyncio.IncompleteReadError, ValueError) as exc:
                result.fail(exc)
                if writer is not None:
                    writer.close()
                reader = writer = None
                continue
            result.latencies.append(time.perf_counter() - began)
            result.statuses[index] = status
            if close:
                writer.close()
                reader = writer = None
        if writer is not None:
            writer.close()

    async def report() -> None:
        while True:
            await asyncio.sleep(0.2)
            if progress is not None:
                progress(result.sent, len(requests))

    reporter = asyncio.create_task(report())
    await asyncio.gather(*(connection() for _ in range(connections)))
    result.finished = time.perf_counter()
    result.client_cpu = time.process_time() - cpu_before
    reporter.cancel()
    return result


async def _read_response(reader: asyncio.StreamReader) -> tuple[int, bool]:
    """Read one response; its status and whether the server will close the connection."""
    head = await reader.readuntil(b"\r\n\r\n")
    status_line, *header_lines = head[:-4].split(b"\r\n")
    version, status, _ = status_line.split(b" ", 2)
    length, chunked, close = 0, False, version == b"HTTP/1.0"
    for line in header_lines:
        name, _, value = line.partition(b":")
        name = name.strip().lower()
        if name == b"content-length":
            length = int(value)
        elif name == b"transfer-encoding":
            chunked = b"chunked" in value.lower()
        elif name == b"connection":
            close = value.strip().lower() == b"close"
    if chunked:
        await _read_chunked(reader)
    elif length:
        await reader.readexactly(length)
    return int(status), close


async def _read_chunked(reader: asyncio.StreamReader) -> None:
    while True:
        size = int((await reader.readuntil(b"\r\n")).split(b";")[0], 16)
        await reader.readexactly(size + 2)  # the chunk and its CRLF
        if size == 0:
            return
