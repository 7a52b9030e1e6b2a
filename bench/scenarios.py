"""The scenarios: ingest, settle (hot and spread), duplicate storm, end to end, /metrics.

Each round starts from a clean state and ends with its exactness check (bench.harness). Where
a figure has a baseline, tally and the baseline run in interleaved rounds on the same servers,
and each side's figure is the median of its rounds. Next to each rate stands the CPU that web,
worker and PostgreSQL spent per unit of work (bench.cpu), which a busy neighbour moves less.
"""

import time
from collections.abc import Callable

import requests

from bench.client import LoadResult, percentile_ms
from bench.database import (
    SEEDED_FAILED,
    SEEDED_QUEUED,
    make_counters,
    payment_specs,
    seed_delivery_log,
    store_deliveries,
)
from bench.environment import HOST
from bench.events import http_get
from bench.harness import (
    HOLD,
    Bench,
    Drain,
    Measured,
    Round,
    RoundOf,
    bare_exactness,
    bare_votes,
    baseline_rows,
    credited_payments,
    finished_deliveries,
    ledger_exactness,
    load_details,
    paired,
    posted,
    signed_posts,
    stored_exactness,
)
from bench.report import Exactness, Figure, Goal, ScenarioResult

SPREAD_CONTESTANTS = 1000
# Posting is cheap next to settling: ingest and the storm post this many requests per payment
# of --payments, so their rounds last seconds, long enough for steady figures.
POSTS_PER_PAYMENT = 3
STORM_COPIES = 10
WARM_UP_REQUESTS = 200
# Goals from the brief: figures to print, not assertions.
INGEST_RATIO_GOAL = 0.9
INGEST_P99_GOAL_MS = 50.0
SETTLE_HOT_RATIO_GOAL = 1.0
HOT_OVER_SPREAD_GOAL = 0.9
VERIFY_PER_CREDIT_GOAL = 1.05
E2E_APPLIED_GOAL = 150.0
METRICS_SMALL_LOG = 1000
METRICS_SCRAPES = 40  # per kind of scrape and log size
METRICS_WARM_UP = 16  # scrapes before the clock, one per gunicorn thread and more
METRICS_FULL_SCANS = 5  # the old query is slow on a large log: fewer runs of it
METRICS_FLAT_GOAL = 2.0  # a scrape over the large log costs at most this many times the small


def _latency_figures(
    tally: Measured, baseline: Measured | None, *, percentiles: tuple[int, ...] = (50, 95, 99)
) -> list[Figure]:
    """Latency of the posts; the p99 goal is ingest's, shown where all three are."""
    figures = []
    for percentile in percentiles:
        value = tally.latency_ms(percentile)
        goal = None
        if percentile == 99 and len(percentiles) == 3:
            goal = Goal(f"<= {INGEST_P99_GOAL_MS:g} ms", value <= INGEST_P99_GOAL_MS)
        base = baseline.latency_ms(percentile) if baseline is not None else None
        figures.append(Figure(f"p{percentile}_ms", f"p{percentile}", value, "ms", base, goal))
    return figures


def _cpu_figure(tally: Measured, baseline: Measured, unit: str) -> Figure:
    """CPU of web, worker and PostgreSQL per unit of work: steadier than a rate on a shared
    machine, and lower is better, so its ratio reads the other way round."""
    return Figure(f"cpu_ms_per_{unit}", "CPU", tally.cpu_ms, f"ms/{unit}", baseline.cpu_ms)


def _details(tally: Measured, baseline: Measured | None = None) -> dict[str, object]:
    details: dict[str, object] = {"tally": tally.details()}
    if baseline is not None:
        details["baseline"] = baseline.details()
    return details


# -- ingest -------------------------------------------------------------------------------


def ingest(bench: Bench) -> list[ScenarioResult]:
    """Signed, distinct charge.success deliveries with no worker: stored and enqueued only."""
    bench.clean()
    bench.stack.stop_worker()  # the queue is purged after each round
    web, bare_web = bench.stack.ports.web, bench.stack.ports.baseline_web
    # Every gunicorn thread opens its database and broker connections on its first request.
    warm = payment_specs(min(WARM_UP_REQUESTS, bench.options.payments), [1], label="warm")
    bench.post(web, signed_posts(warm, web), "ingest: warming up tally")
    bench.post(bare_web, signed_posts(warm, bare_web), "ingest: warming up the baseline")

    def tally_round(count: int, name: str) -> Round:
        from webhooks.models import Delivery

        bench.clean()
        payments = payment_specs(count, [1], label=f"ingest{name}")
        posts = signed_posts(payments, web)
        cpu = bench.cpu()
        run = bench.post(web, posts, f"ingest: tally, round {name}")
        spent = bench.cpu().since(cpu)
        stored = Delivery.objects.count()
        repeats = Delivery.objects.filter(delivery_count__gt=1).count()
        exactness = stored_exactness(run.answered_ok, stored, repeats)
        return posted(run, exactness, name=name, cpu_seconds=spent)

    def bare_round(count: int, name: str) -> Round:
        bench.clean()
        payments = payment_specs(count, [1], label=f"ingest{name}")
        posts = signed_posts(payments, bare_web)
        cpu = bench.cpu()
        run = bench.post(bare_web, posts, f"ingest: baseline, round {name}")
        spent = bench.cpu().since(cpu)
        exactness = stored_exactness(run.answered_ok, baseline_rows(), 0)
        return posted(run, exactness, name=name, cpu_seconds=spent)

    tally, bare = paired(tally_round, bare_round, POSTS_PER_PAYMENT * bench.options.payments)
    bench.clean()
    bench.lent["bare_ingest_rate"] = bare.rate
    met = tally.rate >= INGEST_RATIO_GOAL * bare.rate
    figures = [
        Figure(
            "requests_per_s",
            "rate",
            tally.rate,
            "requests/s",
            bare.rate,
            Goal(f">= {INGEST_RATIO_GOAL}x baseline", met),
        ),
        *_latency_figures(tally, bare),
        _cpu_figure(tally, bare, "request"),
        Figure("errors", "errors", tally.errors, "requests", bare.errors),
    ]
    return [
        ScenarioResult(
            "ingest", "ingest", figures, tally.exactness, bare.exactness, _details(tally, bare)
        )
    ]


# -- settle -------------------------------------------------------------------------------


def settle(bench: Bench, *, concurrency: int | None = None) -> list[ScenarioResult]:
    """Queued deliveries drained by the worker: one hot contestant, then spread over 1,000.

    `concurrency` is the worker's pool size (default --worker-concurrency); 32 settling
    transactions at once is this with another number, reported under its own keys.
    """
    concurrency = concurrency or bench.options.worker_concurrency
    bench.stack.worker(concurrency=concurrency)
    sides = {
        layout: paired(
            _settle_tally(bench, contestants, layout),
            _settle_bare(bench, contestants, layout),
            bench.options.payments,
        )
        for layout, contestants in (("hot", 1), ("spread", SPREAD_CONTESTANTS))
    }
    (hot, bare_hot), (spread, bare_spread) = sides["hot"], sides["spread"]
    suffix = "" if concurrency == bench.options.worker_concurrency else f"_c{concurrency}"
    hot_goal = Goal(
        f">= {SETTLE_HOT_RATIO_GOAL}x baseline", hot.rate >= SETTLE_HOT_RATIO_GOAL * bare_hot.rate
    )
    hot_over_spread = hot.rate / spread.rate
    return [
        ScenarioResult(
            f"settle_hot{suffix}",
            f"settle, one hot contestant (x{concurrency})",
            [
                Figure(
                    "payments_per_s", "settled", hot.rate, "payments/s", bare_hot.rate, hot_goal
                ),
                _cpu_figure(hot, bare_hot, "payment"),
            ],
            hot.exactness,
            bare_hot.exactness,
            _details(hot, bare_hot),
        ),
        ScenarioResult(
            f"settle_spread{suffix}",
            f"settle, spread over 1,000 (x{concurrency})",
            [
                Figure("payments_per_s", "settled", spread.rate, "payments/s", bare_spread.rate),
                _cpu_figure(spread, bare_spread, "payment"),
                Figure(
                    "hot_over_spread",
                    "hot / spread",
                    hot_over_spread,
                    "ratio",
                    bare_hot.rate / bare_spread.rate,
                    Goal(f">= {HOT_OVER_SPREAD_GOAL}", hot_over_spread >= HOT_OVER_SPREAD_GOAL),
                ),
            ],
            spread.exactness,
            bare_spread.exactness,
            _details(spread, bare_spread),
        ),
    ]


def _settle_tally(bench: Bench, contestants: int, layout: str) -> RoundOf:
    def measure(count: int, name: str) -> Round:
        from tasks.deliveries import process_delivery

        bench.clean()
        payments = bench.new_payments(count, contestants, label=f"settle{name}")
        # What tasks.deliveries.enqueue_deliveries sends, held back until the clock starts.
        for delivery_id in store_deliveries(payments):
            process_delivery.apply_async((delivery_id, 1), queue=HOLD)
        label = f"settle {layout}: tally, round {name}"
        drained, spent = _drain_backlog(bench, finished_deliveries, count, label)
        exactness = ledger_exactness(payments, capped=drained.capped)
        return _drained(drained, spent, exactness, name)

    return measure


def _settle_bare(bench: Bench, contestants: int, layout: str) -> RoundOf:
    def measure(count: int, name: str) -> Round:
        from bench.baseline_tasks import bare_settle

        bench.clean()
        payments = payment_specs(count, make_counters(contestants), label=f"bare{name}")
        bench.sandbox.pay(payments)
        for payment in payments:
            bare_settle.apply_async((payment.reference, payment.contestant_id), queue=HOLD)
        label = f"settle {layout}: baseline, round {name}"
        drained, spent = _drain_backlog(bench, bare_votes, count, label)
        return _drained(drained, spent, bare_exactness(count, capped=drained.capped), name)

    return measure


def _drain_backlog(
    bench: Bench, count: Callable[[], int], expected: int, label: str
) -> tuple[Drain, float]:
    """Release the held backlog to the warm, idle worker and time it until `count` says done;
    the drain and the CPU seconds it took."""
    held = bench.held()
    if held != expected:
        raise RuntimeError(f"{expected} tasks enqueued but {held} held")
    cpu = bench.cpu()
    started = time.perf_counter()
    bench.release_backlog()
    drained = bench.drain(count, expected, started=started, label=label)
    spent = bench.cpu().since(cpu)
    bench.finish_drain(drained)
    return drained, spent


def _drained(drained: Drain, cpu_seconds: float, exactness: Exactness, name: str) -> Round:
    return Round(
        name=name,
        done=drained.done,
        seconds=drained.elapsed,
        exactness=exactness,
        cpu_seconds=cpu_seconds,
        details={"capped": drained.capped},
    )


# -- duplicate storm ----------------------------------------------------------------------


def storm(bench: Bench) -> list[ScenarioResult]:
    """Every payment delivered 10 times at once while the worker settles, and each payer
    back on the callback too, as a fan's browser is.

    The storm posts as many requests as ingest (a tenth as many payments, ten copies each,
    side by side so they are in flight together), so its rate compares with ingest's. The
    callbacks follow at once, while the worker still settles. Verify calls per credited
    payment count every path: deliveries, their copies, callbacks.
    """
    from webhooks.models import Delivery

    web = bench.stack.ports.web
    bench.stack.worker(concurrency=bench.options.worker_concurrency)
    bench.clean()
    count = max(POSTS_PER_PAYMENT * bench.options.payments // STORM_COPIES, 1)
    payments = bench.new_payments(count, SPREAD_CONTESTANTS, label="storm")
    posts = signed_posts(payments, web, copies=STORM_COPIES)
    cpu = bench.cpu()
    run = bench.post(web, posts, f"storm: tally, {STORM_COPIES} copies each")
    callbacks = [
        http_get(HOST, web, f"/payments/callback/?reference={p.reference}") for p in payments
    ]
    returned = bench.post(web, callbacks, "storm: the payers' callbacks")
    drained = bench.drain(credited_payments, count, started=run.finished, label="storm: settling")
    spent = bench.cpu().since(cpu)
    bench.finish_drain(drained)
    checked = ledger_exactness(payments, capped=drained.capped or run.sent < len(posts))
    stored = Delivery.objects.count()
    # A repeat is counted on the stored row, never stored (or settled) again.
    exactness = Exactness(
        checked=checked.checked,
        lost=checked.lost,
        doubled=checked.doubled + max(stored - count, 0),
        out_of_balance=checked.out_of_balance,
        unfinished=checked.unfinished,
    )
    verify_calls, credited = bench.sandbox.verify_calls(), credited_payments()
    per_credit = verify_calls / credited if credited else float("nan")
    result = Measured([posted(run, exactness, name="a", cpu_seconds=spent)])
    figures = [
        Figure(
            "posts_per_s",
            "ingest rate",
            result.rate,
            "requests/s",
            bench.lent.get("bare_ingest_rate"),
        ),
        *_latency_figures(result, None, percentiles=(99,)),
        Figure(
            "verify_per_credited",
            "verify calls",
            per_credit,
            "per credit",
            1.0,
            Goal(f"<= {VERIFY_PER_CREDIT_GOAL}", per_credit <= VERIFY_PER_CREDIT_GOAL),
        ),
        Figure("errors", "errors", run.errors, "requests"),
    ]
    details = {
        **load_details(run),
        "payments": count,
        "copies": STORM_COPIES,
        "stored_deliveries": stored,
        "verify_calls": verify_calls,
        "callbacks": returned.sent,
        "callbacks_redirected": sum(status == 302 for status in returned.statuses),
        "credited": credited,
        "settle_tail_seconds": round(drained.elapsed, 3),
    }
    return [ScenarioResult("storm", "duplicate storm", figures, exactness, details=details)]


# -- end to end ---------------------------------------------------------------------------


def end_to_end(bench: Bench) -> list[ScenarioResult]:
    """Signed posts and settling together on one hot contestant, worker running: from the
    first post until the last payment is credited."""
    web, bare_web = bench.stack.ports.web, bench.stack.ports.baseline_web
    bench.stack.worker(concurrency=bench.options.worker_concurrency)

    def tally_round(count: int, name: str) -> Round:
        bench.clean()
        payments = bench.new_payments(count, 1, label=f"e2e{name}")
        posts = signed_posts(payments, web)
        cpu = bench.cpu()
        run = bench.post(web, posts, f"end to end: tally, round {name}")
        drained = bench.drain(
            credited_payments, count, started=run.started, label=f"end to end: tally, {name}"
        )
        spent = bench.cpu().since(cpu)
        bench.finish_drain(drained)
        exactness = ledger_exactness(payments, capped=drained.capped or run.sent < count)
        return _end_to_end_round(run, drained, spent, exactness, name)

    def bare_round(count: int, name: str) -> Round:
        bench.clean()
        payments = payment_specs(count, make_counters(1), label=f"bare{name}")
        bench.sandbox.pay(payments)
        label = f"end to end: baseline, round {name}"
        posts = signed_posts(payments, bare_web)
        cpu = bench.cpu()
        run = bench.post(bare_web, posts, label)
        drained = bench.drain(bare_votes, count, started=run.started, label=label)
        spent = bench.cpu().since(cpu)
        bench.finish_drain(drained)
        exactness = bare_exactness(count, capped=drained.capped or run.sent < count)
        return _end_to_end_round(run, drained, spent, exactness, name)

    tally, bare = paired(tally_round, bare_round, bench.options.payments)
    figures = [
        Figure(
            "applied_per_s",
            "applied",
            tally.rate,
            "payments/s",
            bare.rate,
            Goal(f">= {E2E_APPLIED_GOAL:g}/s", tally.rate >= E2E_APPLIED_GOAL),
        ),
        Figure("posts_per_s", "ingest rate", tally.post_rate, "requests/s", bare.post_rate),
        *_latency_figures(tally, bare, percentiles=(99,)),
        _cpu_figure(tally, bare, "payment"),
    ]
    return [
        ScenarioResult(
            "e2e",
            "end to end, hot",
            figures,
            tally.exactness,
            bare.exactness,
            _details(tally, bare),
        )
    ]


def _end_to_end_round(
    run: LoadResult, drained: Drain, cpu_seconds: float, exactness: Exactness, name: str
) -> Round:
    """Posting and settling in one round: applied payments over the whole round, posts over
    the posting part of it."""
    measured = posted(run, exactness, name=name, cpu_seconds=cpu_seconds)
    measured.posted, measured.post_seconds = measured.done, measured.seconds
    measured.done, measured.seconds = drained.done, drained.elapsed
    measured.details.update(post_rate=round(measured.post_rate, 1), capped=drained.capped)
    return measured


# -- /metrics -----------------------------------------------------------------------------


def metrics(bench: Bench) -> list[ScenarioResult]:
    """A /metrics scrape over a delivery log of 1 k rows and of --metrics-rows (1 M).

    Timed per log size: a scrape that reads the database (the shared reading is dropped
    before each, as happens once per 10-15 s in production), one served from the shared
    reading (every other scrape), and the delivery gauges' query on its own next to its
    baseline, the full-table GROUP BY every scrape ran before. Each log holds the same 30
    watched rows (queued, failed) among its processed and ignored ones.
    """
    session = requests.Session()
    url = f"http://{HOST}:{bench.stack.ports.web}/metrics"
    sizes = sorted({METRICS_SMALL_LOG, bench.options.metrics_rows})
    measured: dict[int, dict[str, float]] = {}
    for rows in sizes:
        bench.clean()
        bench.console.step(f"metrics: seeding {rows:,} deliveries")
        seed_delivery_log(rows)
        measured[rows] = _metrics_figures(bench, session, url, rows)
    small, large = measured[sizes[0]], measured[sizes[-1]]
    flat = large["read_p50_ms"] / small["read_p50_ms"]
    results = []
    for rows in sizes:
        figures = [
            Figure("scrape_p50_ms", "scrape, read", measured[rows]["read_p50_ms"], "ms"),
            Figure("cached_scrape_p50_ms", "scrape, shared", measured[rows]["cached_p50_ms"], "ms"),
            Figure(
                "gauge_query_p50_ms",
                "gauge query",
                measured[rows]["gauge_query_p50_ms"],
                "ms",
                measured[rows]["full_scan_p50_ms"],
            ),
        ]
        if rows == sizes[-1] and len(sizes) > 1:
            goal = Goal(f"<= {METRICS_FLAT_GOAL:g}x", flat <= METRICS_FLAT_GOAL)
            figures.append(
                Figure("read_large_over_small", "large / small", flat, "ratio", None, goal)
            )
        results.append(
            ScenarioResult(
                f"metrics_{_rows_label(rows)}",
                f"/metrics, {rows:,} deliveries",
                figures,
                Exactness(checked=0, lost=0, doubled=0),
                details={"rows": rows, **{k: round(v, 2) for k, v in measured[rows].items()}},
            )
        )
    bench.clean()
    return results


def _metrics_figures(
    bench: Bench, session: requests.Session, url: str, rows: int
) -> dict[str, float]:
    from ops.gauges import forget_live_reading, watched_deliveries

    def scrape() -> float:
        started = time.perf_counter()
        response = session.get(url, timeout=60)
        elapsed = time.perf_counter() - started
        if response.status_code != 200:
            raise RuntimeError(f"/metrics answered {response.status_code}: {response.text[:200]}")
        if f'tally_deliveries{{status="queued"}} {SEEDED_QUEUED}.0' not in response.text:
            raise RuntimeError("/metrics did not count the seeded queued deliveries")
        return elapsed

    label = f"metrics, {rows:,} deliveries"
    for _ in range(METRICS_WARM_UP):  # every gunicorn thread opens its connections first
        forget_live_reading()
        scrape()
    bench.console.step(f"{label}: scrapes that read the database")
    read = []
    for n in range(METRICS_SCRAPES):
        forget_live_reading()
        read.append(scrape())
        bench.console.progress(n + 1, METRICS_SCRAPES)
    bench.console.step(f"{label}: scrapes served from the shared reading")
    cached = [scrape() for _ in range(METRICS_SCRAPES)]
    bench.console.step(f"{label}: the gauges' query, and the old full-table GROUP BY")
    gauge_query = [_timed(watched_deliveries) for _ in range(METRICS_SCRAPES)]
    full_scan = [_timed(_old_full_scan) for _ in range(METRICS_FULL_SCANS)]
    return {
        "read_p50_ms": percentile_ms(read, 50),
        "cached_p50_ms": percentile_ms(cached, 50),
        "gauge_query_p50_ms": percentile_ms(gauge_query, 50),
        "full_scan_p50_ms": percentile_ms(full_scan, 50),
    }


def _timed(work: Callable[[], object]) -> float:
    started = time.perf_counter()
    work()
    return time.perf_counter() - started


def _old_full_scan() -> None:
    """What every scrape ran before: a count and oldest per status over the whole log."""
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT status, count(id), now() - min(received_at) FROM webhooks_delivery "
            "GROUP BY status"
        )
        rows = cursor.fetchall()
    if sum(row[1] for row in rows) < SEEDED_QUEUED + SEEDED_FAILED:
        raise RuntimeError("the delivery log was not seeded")


def _rows_label(rows: int) -> str:
    if rows % 1_000_000 == 0:
        return f"{rows // 1_000_000}m"
    if rows % 1000 == 0:
        return f"{rows // 1000}k"
    return str(rows)


def settle_32(bench: Bench) -> list[ScenarioResult]:
    """Settle with 32 transactions in flight: one hot contestant against spread ones."""
    return settle(bench, concurrency=32)


SCENARIOS: dict[str, Callable[[Bench], list[ScenarioResult]]] = {
    "ingest": ingest,
    "settle": settle,
    "settle32": settle_32,
    "storm": storm,
    "e2e": end_to_end,
    "metrics": metrics,
}
