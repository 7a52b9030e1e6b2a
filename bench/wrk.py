"""wrk, a load generator written in C, posting the same pre-signed requests as bench.client.

Used once per run of the `client` scenario to show that the bench's asyncio client is not what
limits the ingest figures. wrk cannot sign a body (its Lua has no HMAC), so the requests are
rendered and signed beforehand, written to a file separated by NUL bytes, and a Lua script
hands them out: thread t of T sends requests t, t+T, t+2T... Distinct bodies matter for tally
(a repeat is counted, not stored: cheaper); the bare view stores every body it is sent.
"""

import resource
import shutil
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

THREADS = 2

_SCRIPT = r"""
local counter = 0
function setup(thread)
  thread:set("id", counter)
  counter = counter + 1
end

local bodies = {}
local position, step = 1, 1
function init(args)
  local file = io.open(args[1], "rb")
  local data = file:read("*a")
  file:close()
  for one in string.gmatch(data, "([^%z]+)") do bodies[#bodies + 1] = one end
  step = tonumber(args[2])
  position = id + 1
end

function request()
  local one = bodies[position]
  position = position + step
  if position > #bodies then position = id + 1 end
  return one
end

function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format("BENCH %d %d %d %d %d %d\n", summary.requests, summary.duration,
    e.status, e.connect + e.read + e.write + e.timeout, latency:percentile(50),
    latency:percentile(99)))
end
"""


@dataclass(frozen=True)
class WrkResult:
    requests: int  # completed
    seconds: float
    non_2xx: int
    socket_errors: int
    p50_ms: float
    p99_ms: float
    cpu_seconds: float  # wrk's own user + system time

    @property
    def rate(self) -> float:
        return self.requests / self.seconds if self.seconds else 0.0


def available() -> bool:
    return shutil.which("wrk") is not None


def run_wrk(
    url: str, requests: Sequence[bytes], *, connections: int, seconds: float, workdir: Path
) -> WrkResult:
    """wrk at `connections` for `seconds` (whole, at least 1), cycling through `requests`
    (repeats past the end)."""
    if any(b"\0" in request for request in requests):
        raise ValueError("a request holds a NUL byte, which separates them in wrk's file")
    bodies, script = workdir / "wrk-requests.bin", workdir / "wrk-post.lua"
    bodies.write_bytes(b"\0".join(requests))
    script.write_text(_SCRIPT)
    argv = ["wrk", "-t", str(THREADS), "-c", str(max(connections, THREADS))]
    argv += ["-d", f"{max(round(seconds), 1)}s", "--latency", "-s", str(script), url, "--"]
    argv += [str(bodies), str(THREADS)]
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    done = subprocess.run(argv, capture_output=True, text=True, check=False, timeout=seconds + 60)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    line = next((ln for ln in done.stdout.splitlines() if ln.startswith("BENCH ")), None)
    if done.returncode != 0 or line is None:
        raise RuntimeError(f"wrk failed ({done.returncode}):\n{done.stdout}\n{done.stderr}")
    count, micros, non_2xx, socket_errors, p50, p99 = (int(v) for v in line.split()[1:])
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return WrkResult(count, micros / 1e6, non_2xx, socket_errors, p50 / 1000, p99 / 1000, cpu)
