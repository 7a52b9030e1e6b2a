"""The scenarios: the load client against wrk, ingest, settle (hot and spread), duplicate
storm, end to end, settle latency against load, /metrics.

Each round starts from a clean state and ends with its exactness check (bench.harness). Where
a figure has a baseline, tally (one delivery per task, and batched) and the baseline run in
interleaved rounds on the same servers, and each side's figure is the median of its rounds.
Next to each rate stands the CPU that web, worker and PostgreSQL spent per unit of work
(bench.cpu), which a busy neighbour moves less.
"""

import time
from collections.abc import Callable
from functools import partial

import requests

from bench import wrk
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
from bench.events import WEBHOOK_PATH, PaidPayment, http_get
from bench.harness import (
    HOLD,
    Bench,
    Drain,
    GoalRule,
    Measured,
    Round,
    RoundOf,
    Side,
    bare_exactness,
    bare_votes,
    baseline_rows,
    credited_payments,
    figure,
    finished_deliveries,
    ledger_exactness,
    load_details,
    posted,
    settle_latencies,
    signed_posts,
    stored_exactness,
)
from bench.report import Exactness, Figure, Goal, ScenarioResult

SPREAD_CONTESTANTS = 1000
# Posting is cheap next to settling: ingest and the storm post this many requests per payment
# of --payments, so an ingest round lasts about 10 s at the rates seen on 2 cores.
POSTS_PER_PAYMENT = 3
STORM_COPIES = 10
# Goals from issue #16 ("Done when"): figures to print, not assertions.
INGEST_RATIO_GOAL = 0.9
INGEST_P99_GOAL_MS = 50.0
SETTLE_RATIO_GOAL = 1.0  # one delivery per task, against the bare task
SETTLE_BATCHED_RATIO_GOAL = 2.0  # SETTLE_BATCH_SIZE=K, against the same bare task
HOT_OVER_SPREAD_GOAL = 0.9
VERIFY_PER_CREDIT_GOAL = 1.05
E2E_RATIO_GOAL = 1.0
LATENCY_LOADS = (25, 50, 75, 100)  # percent of the measured end-to-end capacity
LATENCY_GOAL_LOAD = 50
LATENCY_P50_GOAL_MS = 50.0
LATENCY_P99_GOAL_MS = 250.0
CLIENT_RATIO_GOAL = 0.9  # the bench's client reaches at least this share of wrk's rate
METRICS_SMALL_LOG = 1000
METRICS_SCRAPES = 40  # per kind of scrape and log size
METRICS_WARM_UP = 16  # scrapes before the clock, one per gunicorn thread and more
METRICS_FULL_SCANS = 5  # the old query is slow on a large log: fewer runs of it
METRICS_FLAT_GOAL = 2.0  # a scrape over the large log costs at most this many times the small

TALLY, BATCHED, BASELINE = "tally", "tally_batched", "baseline"


def _rate(measured_round: Round) -> float:
    return measured_round.rate


def _cpu_ms(measured_round: Round) -> float:
    return measured_round.cpu_ms


def _post_rate(measured_round: Round) -> float:
    return measured_round.post_rate


def _percentile(percentile: int) -> Callable[[Round], float]:
    return lambda measured_round: measured_round.latency_ms(percentile)


def _ratio_goal(at_least: float) -> GoalRule:
    def goal(value: float, baseline: float | None) -> Goal:
        met = baseline is not None and value >= at_least * baseline
        return Goal(f">= {at_least:g}x baseline", met)

    return goal


def _at_most(limit: float, unit: str) -> GoalRule:
    return lambda value, _: Goal(f"<= {limit:g} {unit}", value <= limit)


def _latency_figures(
    tally: Measured, baseline: Measured | None, *, percentiles: tuple[int, ...] = (50, 95, 99)
) -> list[Figure]:
    """Latency of the posts; the p99 goal is ingest's, shown where all three are."""
    return [
        figure(
            f"p{percentile}_ms",
            f"p{percentile}",
            "ms",
            tally,
            _percentile(percentile),
            baseline,
            _at_most(INGEST_P99_GOAL_MS, "ms")
            if percentile == 99 and len(percentiles) == 3
            else None,
        )
        for percentile in percentiles
    ]


def _cpu_figure(tally: Measured, baseline: Measured, unit: str) -> Figure:
    """CPU of web, worker and PostgreSQL per unit of work: steadier than a rate on a shared
    machine, and lower is better, so its ratio reads the other way round."""
    return figure(f"cpu_ms_per_{unit}", "CPU", f"ms/{unit}", tally, _cpu_ms, baseline)


def _details(tally: Measured, baseline: Measured | None = None) -> dict[str, object]:
    details: dict[str, object] = {"tally": tally.details()}
    if baseline is not None:
        details["baseline"] = baseline.details()
    return details


def _tally_sides(bench: Bench, measure: Callable[[int], RoundOf]) -> list[Side]:
    """tally one delivery per task, and (unless --batch-size 1) batched: `measure(K)` gives
    the round of the side whose worker runs with SETTLE_BATCH_SIZE=K."""
    sides = [Side(TALLY, measure(1), batch_size=1, profiled=True)]
    if bench.options.batch_size > 1:
        batch = bench.options.batch_size
        sides.append(Side(BATCHED, measure(batch), batch_size=batch, profiled=True))
    return sides


def _bare_side(bench: Bench, measure: RoundOf) -> Side:
    """The bare task's side, always on a worker with the batched side's settings: its
    prefetch (SETTLE_BATCH_SIZE messages per pool process) is the bare task's best case too,
    and every round of it runs on the same worker settings."""
    return Side(BASELINE, measure, batch_size=bench.options.batch_size)


def _batched_title(bench: Bench, title: str, side: str) -> str:
    return title if side == TALLY else f"{title}, batched K={bench.options.batch_size}"


# -- ingest -------------------------------------------------------------------------------


def ingest(bench: Bench) -> list[ScenarioResult]:
    """Signed, distinct charge.success deliveries with no worker: stored and enqueued only."""
    bench.clean()
    bench.stack.stop_worker()  # the queue is purged after each round
    web, bare_web = bench.stack.ports.web, bench.stack.ports.baseline_web

    def tally_round(count: int, name: str) -> Round:
        from webhooks.models import Delivery

        bench.clean()
        payments = payment_specs(POSTS_PER_PAYMENT * count, [1], label=f"ingest{name}")
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
        payments = payment_specs(POSTS_PER_PAYMENT * count, [1], label=f"ingest{name}")
        posts = signed_posts(payments, bare_web)
        cpu = bench.cpu()
        run = bench.post(bare_web, posts, f"ingest: baseline, round {name}")
        spent = bench.cpu().since(cpu)
        exactness = stored_exactness(run.answered_ok, baseline_rows(), 0)
        return posted(run, exactness, name=name, cpu_seconds=spent)

    sides = [Side(TALLY, tally_round, profiled=True), Side(BASELINE, bare_round)]
    measured = bench.interleaved(sides, scenario="ingest", concurrency=None)
    tally, bare = measured[TALLY], measured[BASELINE]
    bench.clean()
    bench.lent["bare_ingest_rate"] = bare.rate
    figures = [
        figure(
            "requests_per_s",
            "rate",
            "requests/s",
            tally,
            _rate,
            bare,
            _ratio_goal(INGEST_RATIO_GOAL),
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
    """Queued deliveries drained by the worker: one hot contestant, then spread over 1,000;
    tally one delivery per task and batched, each against the same bare task.

    `concurrency` is the worker's pool size (default --worker-concurrency); 32 settling
    transactions at once is this with another number, reported under its own keys.
    """
    concurrency = concurrency or bench.options.worker_concurrency
    suffix = "" if concurrency == bench.options.worker_concurrency else f"_c{concurrency}"
    results = []
    for layout, contestants, title in (
        ("hot", 1, f"settle, one hot contestant (x{concurrency})"),
        ("spread", SPREAD_CONTESTANTS, f"settle, spread over 1,000 (x{concurrency})"),
    ):
        sides = [
            *_tally_sides(bench, partial(_settle_tally, bench, contestants, layout)),
            _bare_side(bench, _settle_bare(bench, contestants, layout)),
        ]
        measured = bench.interleaved(
            sides, scenario=f"settle_{layout}{suffix}", concurrency=concurrency
        )
        bare = measured[BASELINE]
        for side, goal in ((TALLY, SETTLE_RATIO_GOAL), (BATCHED, SETTLE_BATCHED_RATIO_GOAL)):
            if side not in measured:
                continue
            tally = measured[side]
            key = f"settle_{layout}{'_batched' if side == BATCHED else ''}{suffix}"
            figures = [
                figure(
                    "payments_per_s",
                    "settled",
                    "payments/s",
                    tally,
                    _rate,
                    bare,
                    _ratio_goal(goal),
                ),
                _cpu_figure(tally, bare, "payment"),
            ]
            results.append(
                ScenarioResult(
                    key,
                    _batched_title(bench, title, side),
                    figures,
                    tally.exactness,
                    bare.exactness,
                    _details(tally, bare),
                )
            )
    return _with_hot_over_spread(results)


def _with_hot_over_spread(results: list[ScenarioResult]) -> list[ScenarioResult]:
    """Each spread result gains hot / spread: one hot contestant must not serialise settling."""
    by_key = {result.key: result for result in results}
    for result in results:
        hot = by_key.get(result.key.replace("settle_spread", "settle_hot"))
        if "settle_spread" not in result.key or hot is None:
            continue
        hot_rate, spread_rate = hot.figures[0], result.figures[0]
        value = hot_rate.value / spread_rate.value
        base = None
        if hot_rate.baseline and spread_rate.baseline:
            base = hot_rate.baseline / spread_rate.baseline
        result.figures.append(
            Figure(
                "hot_over_spread",
                "hot / spread",
                value,
                "ratio",
                base,
                Goal(f">= {HOT_OVER_SPREAD_GOAL}", value >= HOT_OVER_SPREAD_GOAL),
            )
        )
    return results


def _settle_tally(bench: Bench, contestants: int, layout: str, batch: int) -> RoundOf:
    who = "tally" if batch == 1 else f"tally K={batch}"

    def measure(count: int, name: str) -> Round:
        from tasks.deliveries import process_deliveries

        bench.clean()
        payments = bench.new_payments(count, contestants, label=f"settle{name}")
        # What tasks.deliveries.enqueue_deliveries sends, held back until the clock starts.
        for delivery_id in store_deliveries(payments):
            process_deliveries.apply_async((delivery_id, 1), queue=HOLD)
        label = f"settle {layout}: {who}, round {name}"
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
    first post until the last payment is credited; tally unbatched and batched, each against
    the bare pipeline (bare view, bare task)."""
    bare_web = bench.stack.ports.baseline_web

    def bare_round(count: int, name: str) -> Round:
        bench.clean()
        payments = payment_specs(count, make_counters(1), label=f"bare{name}")
        bench.sandbox.pay(payments)
        label = f"end to end: baseline, round {name}"
        run, drained, spent = _post_and_drain(bench, bare_web, payments, bare_votes, label)
        exactness = bare_exactness(count, capped=drained.capped or run.sent < count)
        return _end_to_end_round(run, drained, spent, exactness, name)

    sides = [*_tally_sides(bench, partial(_e2e_tally, bench)), _bare_side(bench, bare_round)]
    measured = bench.interleaved(
        sides, scenario="e2e", concurrency=bench.options.worker_concurrency
    )
    bare = measured[BASELINE]
    results = []
    for side in (TALLY, BATCHED):
        if side not in measured:
            continue
        tally = measured[side]
        # The latency scenario offers load as a share of this, when it runs after.
        bench.lent[f"capacity_{side}"] = tally.rate
        figures = [
            figure(
                "applied_per_s",
                "applied",
                "payments/s",
                tally,
                _rate,
                bare,
                _ratio_goal(E2E_RATIO_GOAL),
            ),
            figure("posts_per_s", "ingest rate", "requests/s", tally, _post_rate, bare),
            *_latency_figures(tally, bare, percentiles=(99,)),
            _cpu_figure(tally, bare, "payment"),
        ]
        results.append(
            ScenarioResult(
                "e2e" if side == TALLY else "e2e_batched",
                _batched_title(bench, "end to end, hot", side),
                figures,
                tally.exactness,
                bare.exactness,
                _details(tally, bare),
            )
        )
    return results


def _e2e_tally(bench: Bench, batch: int) -> RoundOf:
    web = bench.stack.ports.web
    who = "tally" if batch == 1 else f"tally K={batch}"

    def measure(count: int, name: str) -> Round:
        bench.clean()
        payments = bench.new_payments(count, 1, label=f"e2e{name}")
        label = f"end to end: {who}, round {name}"
        run, drained, spent = _post_and_drain(bench, web, payments, credited_payments, label)
        exactness = ledger_exactness(payments, capped=drained.capped or run.sent < count)
        return _end_to_end_round(run, drained, spent, exactness, name)

    return measure


def _post_and_drain(
    bench: Bench,
    port: int,
    payments: list[PaidPayment],
    count: Callable[[], int],
    label: str,
) -> tuple[LoadResult, Drain, float]:
    """Post each payment's delivery, then wait until `count` says all are settled: the posts,
    the drain (timed from the first post) and the CPU seconds of both."""
    cpu = bench.cpu()
    run = bench.post(port, signed_posts(payments, port), label)
    drained = bench.drain(count, len(payments), started=run.started, label=label)
    spent = bench.cpu().since(cpu)
    bench.finish_drain(drained)
    return run, drained, spent


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


# -- settle latency against offered load ----------------------------------------------------


def latency(bench: Bench) -> list[ScenarioResult]:
    """Settle latency (delivery stored -> votes credited) at 25/50/75/100 % of capacity.

    Capacity is tally's end-to-end rate: the e2e scenario's median when it ran, else one
    closed-loop round of --payments. Each load is then offered open loop (posts evenly spaced
    at the rate, worker running) for --latency-seconds, and each payment's latency is read
    from the database: its delivery's received_at (PostgreSQL's now() in the endpoint's
    upsert) to its credit ledger entry's created_at (the worker's clock as it writes the
    entry, inside the credit's transaction). Unbatched and, unless --batch-size 1, batched.
    """
    results = []
    for side in _tally_sides(bench, partial(_e2e_tally, bench)):
        bench.use_worker(side, scenario="latency", concurrency=bench.options.worker_concurrency)
        capacity = bench.lent.get(f"capacity_{side.name}")
        if capacity is None:
            capacity = side.measure(bench.options.payments, "capacity").rate
        levels, exactness = [], Exactness(0, 0, 0)
        for load in LATENCY_LOADS:
            level, checked = _latency_level(bench, side, capacity * load / 100, load)
            levels.append(level)
            exactness = exactness + checked
        at_goal = next(level for level in levels if level["load_percent"] == LATENCY_GOAL_LOAD)
        p50, p99 = at_goal["p50_ms"], at_goal["p99_ms"]
        figures = [
            Figure("capacity_per_s", "capacity", capacity, "payments/s"),
            Figure(
                "settle_p50_ms_at_half",
                f"p50 at {LATENCY_GOAL_LOAD}%",
                p50,
                "ms",
                goal=Goal(f"<= {LATENCY_P50_GOAL_MS:g} ms", p50 <= LATENCY_P50_GOAL_MS),
            ),
            Figure(
                "settle_p99_ms_at_half",
                f"p99 at {LATENCY_GOAL_LOAD}%",
                p99,
                "ms",
                goal=Goal(f"<= {LATENCY_P99_GOAL_MS:g} ms", p99 <= LATENCY_P99_GOAL_MS),
            ),
        ]
        title = _batched_title(
            bench, f"settle latency (x{bench.options.worker_concurrency})", side.name
        )
        key = "latency" if side.name == TALLY else "latency_batched"
        results.append(ScenarioResult(key, title, figures, exactness, details={"levels": levels}))
    return results


def _latency_level(
    bench: Bench, side: Side, rate: float, load: int
) -> tuple[dict[str, float], Exactness]:
    """Offer `rate` payments/s for --latency-seconds, wait until all are credited, and read
    each one's settle latency from the database."""
    web = bench.stack.ports.web
    bench.clean()
    count = max(round(rate * bench.options.latency_seconds), 10)
    payments = bench.new_payments(count, 1, label=f"latency{load}")
    posts = signed_posts(payments, web)
    schedule = [n / rate for n in range(count)]
    label = f"latency: {side.name} at {load}% ({rate:.0f}/s)"
    run = bench.post(web, posts, label, schedule=schedule)
    drained = bench.drain(credited_payments, count, started=run.started, label=label)
    bench.finish_drain(drained)
    exactness = ledger_exactness(payments, capped=drained.capped or run.sent < count)
    latencies, span = settle_latencies()
    level = {
        "load_percent": load,
        "offered_per_s": round(rate, 1),
        "achieved_per_s": round(len(latencies) / span, 1) if span else float("nan"),
        "p50_ms": round(percentile_ms(latencies, 50), 1),
        "p95_ms": round(percentile_ms(latencies, 95), 1),
        "p99_ms": round(percentile_ms(latencies, 99), 1),
        "payments": len(latencies),
        "post_p99_ms": round(run.latency_ms(99), 1),
    }
    return level, exactness


# -- the load client against wrk ------------------------------------------------------------


def client(bench: Bench) -> list[ScenarioResult]:
    """The bench's asyncio client and wrk, each at --connections against the bare view (the
    fastest server here, so the hardest test of a client), in interleaved rounds: if the
    client reaches about wrk's rate, the client is not what limits the ingest figures."""
    if not wrk.available():
        bench.console.note("client: wrk is not installed; skipped")
        return []
    bench.clean()
    bench.stack.stop_worker()
    bare_web = bench.stack.ports.baseline_web
    seconds: list[float] = []

    def client_round(count: int, name: str) -> Round:
        bench.clean()
        payments = payment_specs(POSTS_PER_PAYMENT * count, [1], label=f"client{name}")
        cpu = bench.cpu()
        run = bench.post(bare_web, signed_posts(payments, bare_web), f"client: asyncio, {name}")
        spent = bench.cpu().since(cpu)
        seconds.append(run.elapsed)
        exactness = stored_exactness(run.answered_ok, baseline_rows(), 0)
        return posted(run, exactness, name=name, cpu_seconds=spent)

    def wrk_round(count: int, name: str) -> Round:
        bench.clean()
        payments = payment_specs(POSTS_PER_PAYMENT * count, [1], label=f"wrk{name}")
        bench.console.step(f"client: wrk, {name}")
        cpu = bench.cpu()
        run = wrk.run_wrk(
            f"http://{HOST}:{bare_web}{WEBHOOK_PATH}",
            signed_posts(payments, bare_web),
            connections=bench.options.connections,
            seconds=seconds[-1] if seconds else 5.0,  # as long as the client's last round
            workdir=bench.stack.workdir,
        )
        spent = bench.cpu().since(cpu)
        stored = _settled_count(baseline_rows)
        return Round(
            name=name,
            done=run.requests,
            seconds=run.seconds,
            # wrk stops mid-request at its deadline: a few more rows than answers is expected.
            exactness=Exactness(
                checked=run.requests, lost=max(run.requests - stored, 0), doubled=0
            ),
            errors=run.non_2xx + run.socket_errors,
            cpu_seconds=spent,
            details={
                "p50_ms": run.p50_ms,
                "p99_ms": run.p99_ms,
                "client_cpu_share": round(run.cpu_seconds / run.seconds, 3),
            },
        )

    sides = [Side("asyncio", client_round), Side("wrk", wrk_round)]
    measured = bench.interleaved(sides, scenario="client", concurrency=None)
    ours, theirs = measured["asyncio"], measured["wrk"]
    bench.clean()

    def client_cpu(measured_round: Round) -> float:
        return float(measured_round.details["client_cpu_share"])

    figures = [
        figure(
            "requests_per_s",
            "rate",
            "requests/s",
            ours,
            _rate,
            theirs,
            _ratio_goal(CLIENT_RATIO_GOAL),
        ),
        figure("client_cpu_share", "client CPU", "cores", ours, client_cpu, theirs),
    ]
    return [
        ScenarioResult(
            "client",
            f"load client vs wrk ({bench.options.connections} conn.)",
            figures,
            ours.exactness,
            theirs.exactness,
            {"asyncio": ours.details(), "wrk": theirs.details()},
        )
    ]


def _settled_count(count: Callable[[], int], pause: float = 0.3) -> int:
    """`count` once it stops moving: wrk stops with requests in flight, which the server still
    stores (and publishes) after wrk has gone; the next round's clean state must not get them."""
    last = count()
    while True:
        time.sleep(pause)
        now = count()
        if now == last:
            return now
        last = now


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
    "client": client,
    "ingest": ingest,
    "settle": settle,
    "settle32": settle_32,
    "storm": storm,
    "e2e": end_to_end,
    "latency": latency,
    "metrics": metrics,
}
