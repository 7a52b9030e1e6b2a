"""What every scenario uses: a clean state, posting, timing a drain, counting, checking.

Every measured round follows one pattern: start from a clean state, prepare, start the clock,
let the system work (the client posts, or the worker drains), stop the clock when the database
says the work is done, then check it. `--duration` caps each round: the client stops sending,
or the backlog is taken away from the worker, and whatever was left is reported unfinished.

A settle backlog is built in a holding list the worker does not read, then handed to it with
one atomic RENAME onto its queue: the worker is warm and idle when the clock starts, and
nothing is consumed while the backlog is built. (Celery's cancel_consumer cannot do this on
Redis: a worker blocked in BRPOP still pops the messages and requeues them, in a loop.)
"""

import math
import statistics
import time
from collections.abc import Callable, Sequence
from contextlib import nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import redis
import requests

from bench.client import LoadResult, percentile_ms, run_load
from bench.cpu import CpuSnapshot
from bench.cpu import snapshot as cpu_snapshot
from bench.database import empty_tables, insert_payments, make_contestants, payment_specs
from bench.environment import BASELINE_TABLE, HOST, REDIS_URL
from bench.events import FIRST_GATEWAY_ID, WEBHOOK_PATH, PaidPayment, charge_success, http_post
from bench.processes import Stack
from bench.profile import Profiler
from bench.report import Console, Exactness, Figure, Goal

ROUNDS = 3  # measured rounds per side of a figure
WARM_UP = 200  # payments (or requests) of the untimed round a cold side runs first
QUEUE = "celery"  # CELERY_TASK_DEFAULT_QUEUE: where gunicorn publishes and the worker reads
HOLD = "bench-backlog"  # a backlog waits here, unread, until its drain is timed
POLL_SECONDS = 0.05


@dataclass(frozen=True)
class Options:
    payments: int  # per measured round (settle, end to end); ingest posts 3x as many
    connections: int
    duration: float | None
    worker_concurrency: int
    metrics_rows: int = 1_000_000  # the large delivery log of the metrics scenario
    batch_size: int = 32  # SETTLE_BATCH_SIZE of the batched sides
    latency_seconds: float = 10.0  # how long each offered load of the latency scenario lasts
    profile: Path | None = None  # py-spy's output for tally's measured rounds

    @property
    def drain_timeout(self) -> float:
        """Without a cap, how long a drain may take before what is left counts as lost:
        generous (20 payments/s would be a disaster), so only a real stall trips it."""
        return 60 + self.payments / 20


class Sandbox:
    """The sandbox's control API (see sandbox/server.py)."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.session = requests.Session()

    def reset(self) -> None:
        self._post("reset", {})

    def pay(self, payments: Sequence[PaidPayment]) -> None:
        """Tell the gateway these payments succeeded, with our amounts (no webhook)."""
        for start in range(0, len(payments), 2000):
            items = [
                {"reference": p.reference, "amount": p.amount, "currency": p.currency}
                for p in payments[start : start + 2000]
            ]
            self._post("transactions", {"transactions": items})

    def verify_calls(self) -> int:
        response = self.session.get(f"{self.url}/_sandbox/stats", timeout=30)
        response.raise_for_status()
        return int(response.json()["calls"]["verify"])

    def _post(self, path: str, payload: dict[str, Any]) -> None:
        response = self.session.post(f"{self.url}/_sandbox/{path}", json=payload, timeout=60)
        response.raise_for_status()


@dataclass(frozen=True)
class Drain:
    done: int
    elapsed: float  # seconds from the start given to drain() until done (or the cap)
    capped: bool  # --duration stopped it; what is left is unfinished, not lost


@dataclass
class Round:
    """One measured round of one side: its counts, its time, and its own exactness check."""

    name: str
    done: int  # requests answered, or payments settled
    seconds: float
    exactness: Exactness
    latencies: list[float] = field(default_factory=list)  # seconds, of answered posts
    errors: int = 0  # posts not answered 200
    posted: int = 0  # posts answered, where a round both posts and settles (end to end)
    post_seconds: float = 0.0
    cpu_seconds: float = math.nan  # spent by web, worker and PostgreSQL on the round
    details: dict[str, Any] = field(default_factory=dict)

    @property
    def rate(self) -> float:
        return self.done / self.seconds if self.seconds else math.nan

    @property
    def cpu_ms(self) -> float:
        """CPU milliseconds per unit of work (request or payment)."""
        return self.cpu_seconds / self.done * 1000 if self.done else math.nan

    @property
    def post_rate(self) -> float:
        return self.posted / self.post_seconds if self.post_seconds else math.nan

    def latency_ms(self, percentile: float) -> float:
        """Nearest-rank percentile of answered posts, in milliseconds."""
        return percentile_ms(self.latencies, percentile)

    def summary(self) -> dict[str, Any]:
        return {
            "round": self.name,
            "done": self.done,
            "seconds": round(self.seconds, 3),
            "rate": round(self.rate, 1),
            "cpu_ms": round(self.cpu_ms, 2),
            **self.details,
        }


@dataclass
class Measured:
    """One side (tally or its baseline) of a figure: the median over its rounds.

    A median, because the machine is shared: a round that a neighbour's burst of work slowed
    down is outvoted by the others instead of dragging the figure with it.
    """

    rounds: list[Round] = field(default_factory=list)

    @property
    def rate(self) -> float:
        return _median([r.rate for r in self.rounds])

    @property
    def post_rate(self) -> float:
        return _median([r.post_rate for r in self.rounds])

    def latency_ms(self, percentile: float) -> float:
        return _median([r.latency_ms(percentile) for r in self.rounds])

    def values(self, of: Callable[[Round], float]) -> tuple[float, ...]:
        """One figure of each round, in the order they ran."""
        return tuple(of(r) for r in self.rounds)

    @property
    def cpu_ms(self) -> float:
        return _median([r.cpu_ms for r in self.rounds])

    @property
    def errors(self) -> int:
        return sum(r.errors for r in self.rounds)

    @property
    def exactness(self) -> Exactness:
        total = Exactness(0, 0, 0)
        for measured_round in self.rounds:
            total = total + measured_round.exactness
        return total

    def details(self) -> dict[str, Any]:
        return {
            "done": sum(r.done for r in self.rounds),
            "median_rate": round(self.rate, 1),
            "rounds": [r.summary() for r in self.rounds],
        }


def _median(values: list[float]) -> float:
    values = [v for v in values if not math.isnan(v)]
    return statistics.median(values) if values else math.nan


RoundOf = Callable[[int, str], Round]
GoalRule = Callable[[float, float | None], Goal]


@dataclass(frozen=True)
class Side:
    """One contender of a figure: tally (unbatched or batched) or its bare baseline.

    `batch_size` is the worker's SETTLE_BATCH_SIZE this side needs; None for a side any worker
    serves (the baseline's tasks ignore it) or that needs none. tally's sides are profiled
    under --profile.
    """

    name: str
    measure: RoundOf
    batch_size: int | None = None
    profiled: bool = False


def figure(
    key: str,
    label: str,
    unit: str,
    tally: Measured,
    of: Callable[[Round], float],
    baseline: Measured | None = None,
    goal: GoalRule | None = None,
) -> Figure:
    """A figure from measured rounds: each side's median of `of`, and every round kept."""
    value = _median(list(tally.values(of)))
    base = _median(list(baseline.values(of))) if baseline is not None else None
    return Figure(
        key,
        label,
        value,
        unit,
        base,
        goal(value, base) if goal is not None else None,
        rounds=tally.values(of),
        baseline_rounds=baseline.values(of) if baseline is not None else (),
    )


@dataclass
class Bench:
    """What every scenario needs: the processes, the options, and the shared steps."""

    stack: Stack
    options: Options
    console: Console
    sandbox: Sandbox
    # Figures one scenario lends another as a baseline (the bare ingest rate for the storm).
    lent: dict[str, float] = field(default_factory=dict)
    broker: redis.Redis = field(default_factory=lambda: redis.Redis.from_url(REDIS_URL))
    profiler: Profiler | None = None
    # Which worker start each side last warmed up on (key: scenario and side).
    _warmed: dict[str, int] = field(default_factory=dict)

    # -- rounds ------------------------------------------------------------------------------

    def interleaved(
        self, sides: Sequence[Side], *, scenario: str, concurrency: int | None
    ) -> dict[str, Measured]:
        """Every side in interleaved rounds, A B B A A B (with three: A B C C B A A B C), each
        of --payments (the scenario scales it); each side's figure is the median of its rounds.

        The machine's load drifts (neighbours' test runs come in bursts); interleaving puts all
        sides through the same drift, and the median per side drops the worst-hit round, so
        a ratio stays meaningful when the absolute figures move. With `concurrency`, a worker
        runs with the SETTLE_BATCH_SIZE each side asks for; a side whose worker (or, without
        one, whose scenario) is new to it first runs an untimed warm-up round, so that no
        measured round pays for imports, connections and caches filling.
        """
        measured = {side.name: Measured() for side in sides}
        for n in range(ROUNDS):
            for side in sides if n % 2 == 0 else list(reversed(sides)):
                self.use_worker(side, scenario=scenario, concurrency=concurrency)
                recording = (
                    self.profiler.recording(scenario, side.name)
                    if self.profiler is not None and side.profiled
                    else nullcontext()
                )
                with recording:
                    measured[side.name].rounds.append(side.measure(self.options.payments, "abc"[n]))
        return measured

    def use_worker(self, side: Side, *, scenario: str, concurrency: int | None) -> None:
        """The worker `side` needs (none without `concurrency`), and its warm-up round when
        it has not run one on this worker in this scenario yet."""
        if concurrency is not None:
            batch_size = side.batch_size or self.stack.worker_batch_size or 1
            self.stack.worker(concurrency=concurrency, batch_size=batch_size)
        key = f"{scenario}.{side.name}"
        if self._warmed.get(key) != self.stack.worker_starts:
            warm = min(max(WARM_UP, 4 * (concurrency or 0)), self.options.payments)
            side.measure(warm, "warm-up")
            self._warmed[key] = self.stack.worker_starts

    # -- state -------------------------------------------------------------------------------

    def clean(self) -> None:
        """Worker idle, queues empty, tables empty, sandbox reset.

        The queues are purged rather than Redis flushed: FLUSHDB would also delete kombu's
        binding keys, which running publishers have cached as declared, and later messages
        would be routed nowhere.
        """
        if self.stack.worker_running:
            self.wait_worker_idle()
        from config.celery_app import app

        app.control.purge()
        self.broker.delete(HOLD)
        empty_tables()
        self.sandbox.reset()

    def wait_worker_idle(self, timeout: float = 60) -> None:
        """Until the worker holds no task: a cut-short round leaves some in flight."""
        from config.celery_app import app

        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self.stack.check_alive("worker")
            inspect = app.control.inspect(
                destination=[self.stack.worker_hostname], timeout=2, limit=1
            )
            active, reserved = inspect.active() or {}, inspect.reserved() or {}
            if active and not any(active.values()) and not any(reserved.values()):
                return
            time.sleep(0.2)
        raise RuntimeError(f"the worker was still busy after {timeout:g} s")

    def release_backlog(self) -> None:
        """Hand the held backlog to the worker in one step; the drain is timed from here."""
        if self.broker.llen(QUEUE):
            raise RuntimeError(f"the {QUEUE} queue is not empty; a backlog would be mixed in")
        self.broker.rename(HOLD, QUEUE)

    def withdraw_backlog(self) -> None:
        """Take what the worker has not started away from it (a --duration cap)."""
        if self.broker.exists(QUEUE):
            self.broker.rename(QUEUE, HOLD)

    def held(self) -> int:
        return int(self.broker.llen(HOLD))

    def cpu(self) -> CpuSnapshot:
        return cpu_snapshot(self.stack.tally_process_groups)

    # -- measuring ---------------------------------------------------------------------------

    def post(
        self,
        port: int,
        requests: Sequence[bytes],
        label: str,
        *,
        schedule: Sequence[float] | None = None,
    ) -> LoadResult:
        """Closed loop at --connections, or open loop at the times of `schedule`."""
        self.console.step(label)
        return run_load(
            HOST,
            port,
            requests,
            connections=self.options.connections,
            duration=self.options.duration,
            progress=self.console.progress,
            schedule=schedule,
        )

    def drain(self, count: Callable[[], int], target: int, *, started: float, label: str) -> Drain:
        """Poll `count` until it reaches `target`; time from `started` (a perf_counter)."""
        self.console.step(label)
        cap = started + self.options.duration if self.options.duration else math.inf
        give_up = started + self.options.drain_timeout
        while True:
            done = count()
            now = time.perf_counter()
            self.console.progress(done, target)
            if done >= target or now >= give_up:
                return Drain(done, now - started, capped=False)
            if now >= cap:
                return Drain(done, now - started, capped=True)
            time.sleep(POLL_SECONDS)

    def finish_drain(self, drained: Drain) -> None:
        """After a drain: take back what a cap left queued, and let in-flight tasks end."""
        if drained.capped:
            self.withdraw_backlog()
        self.wait_worker_idle()

    def new_payments(self, count: int, contestants: int, label: str) -> list[PaidPayment]:
        """Contestants and pending payments in tally's tables, paid at the sandbox."""
        payments = payment_specs(count, make_contestants(contestants), label=label)
        insert_payments(payments)
        self.sandbox.pay(payments)
        return payments


def signed_posts(payments: Sequence[PaidPayment], port: int, *, copies: int = 1) -> list[bytes]:
    """Each payment's signed charge.success as a ready request; `copies` side by side."""
    rendered = []
    for n, payment in enumerate(payments):
        delivery = charge_success(payment, gateway_id=FIRST_GATEWAY_ID + n)
        rendered.extend([http_post(HOST, port, WEBHOOK_PATH, delivery)] * copies)
    return rendered


def posted(run: LoadResult, exactness: Exactness, *, name: str, cpu_seconds: float) -> Round:
    """A posting round: answered posts over the posting time."""
    return Round(
        name=name,
        done=len(run.latencies),
        seconds=run.elapsed,
        exactness=exactness,
        latencies=list(run.latencies),
        errors=run.errors,
        cpu_seconds=cpu_seconds,
        details=load_details(run),
    )


def load_details(run: LoadResult) -> dict[str, Any]:
    return {
        "sent": run.sent,
        "answered_ok": run.answered_ok,
        "errors": run.errors,
        "error_samples": run.error_samples,
        "p99_ms": round(run.latency_ms(99), 1),
        "client_cpu_share": round(run.client_cpu / run.elapsed, 3),
    }


# -- counting -----------------------------------------------------------------------------


def finished_deliveries() -> int:
    from webhooks.models import Delivery

    return Delivery.objects.exclude(status__in=Delivery.UNFINISHED).count()


def credited_payments() -> int:
    from ledger.models import Payment

    return Payment.objects.filter(status=Payment.Status.CREDITED).count()


def bare_votes() -> int:
    """The bare tasks add one vote each: the total counts the bare tasks that ran."""
    from django.db.models import Sum

    from bench.baseline_models import BareCounter

    return BareCounter.objects.aggregate(total=Sum("votes"))["total"] or 0


def settle_latencies() -> tuple[list[float], float]:
    """Each credited payment's settle latency in seconds (its delivery's received_at to its
    credit entry's created_at), and the seconds from the first delivery stored to the last
    credit. Reads every row: call it on a round's own clean tables."""
    from ledger.models import LedgerEntry
    from webhooks.models import Delivery

    received = dict(Delivery.objects.values_list("reference", "received_at"))
    credited = LedgerEntry.objects.filter(kind=LedgerEntry.Kind.CREDIT).values_list(
        "payment__reference", "created_at"
    )
    pairs = [(received[ref], at) for ref, at in credited if ref in received]
    if not pairs:
        return [], 0.0
    latencies = [(at - stored).total_seconds() for stored, at in pairs]
    span = (max(at for _, at in pairs) - min(stored for stored, _ in pairs)).total_seconds()
    return latencies, span


def baseline_rows() -> int:
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute(f"SELECT count(*) FROM {BASELINE_TABLE}")
        return int(cursor.fetchone()[0])


def queued_messages() -> int:
    from tasks.broker import queue_depth

    return queue_depth(QUEUE)


# -- exactness ----------------------------------------------------------------------------


def ledger_exactness(payments: Sequence[PaidPayment], *, capped: bool) -> Exactness:
    """Every paid reference credited once: one credit entry each, totals equal to the ledger.

    Under a cap, only payments whose delivery finished are owed a credit; the rest are
    reported unfinished. Without one, a payment not credited by the deadline is lost.
    """
    from django.db.models import Count

    from ledger.models import LedgerEntry
    from ledger.selectors import contestants_out_of_balance
    from webhooks.models import Delivery

    references = [payment.reference for payment in payments]
    credits = dict(
        LedgerEntry.objects.filter(kind=LedgerEntry.Kind.CREDIT, payment__reference__in=references)
        .values_list("payment__reference")
        .annotate(entries=Count("id"))
    )
    owed = set(references)
    if capped:
        owed = set(
            Delivery.objects.filter(reference__in=references)
            .exclude(status__in=Delivery.UNFINISHED)
            .values_list("reference", flat=True)
        )
    return Exactness(
        checked=len(references),
        lost=sum(1 for reference in owed if credits.get(reference, 0) == 0),
        doubled=sum(1 for entries in credits.values() if entries > 1),
        out_of_balance=contestants_out_of_balance().count(),
        unfinished=len(references) - len(owed),
    )


def bare_exactness(expected: int, *, capped: bool) -> Exactness:
    """The baseline's check: as many votes as tasks; under a cap fewer is unfinished."""
    done = bare_votes()
    missing = max(expected - done, 0)
    return Exactness(
        checked=expected,
        lost=0 if capped else missing,
        doubled=max(done - expected, 0),
        unfinished=missing if capped else 0,
    )


def stored_exactness(answered_ok: int, stored: int, repeats: int) -> Exactness:
    """Ingest: each delivery answered 200 is stored once and enqueued once."""
    messages = queued_messages()
    return Exactness(
        checked=answered_ok,
        lost=max(answered_ok - stored, 0) + max(stored - messages, 0),
        doubled=repeats + max(messages - stored, 0),
    )
