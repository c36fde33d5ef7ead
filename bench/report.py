"""The queue bench's printed report: Markdown tables (pasted as-is into docs/performance.md)."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from bench.queue_bench import Phase, Report, Result

TARGET_LOW, TARGET_HIGH, TARGET_P99_MS = 2.5, 2.0, 2.0


def _n(value: float | None, digits: int = 0) -> str:
    if value is None or math.isnan(value):
        return "–"
    return f"{value:,.{digits}f}"


def _ratio(value: float | None, base: float | None) -> str:
    if value is None or base is None or not base or math.isnan(value) or math.isnan(base):
        return "–"
    return f"{value / base:.2f}×"


def _best(values: list[float]) -> float | None:
    return max(values) if values else None


def _rate(result: Result, concurrency: int) -> float | None:
    phase = result.best(concurrency)
    return phase.jobs_per_second if phase else None


def _row(cells: list[str]) -> str:
    return "| " + " | ".join(cells) + " |"


def _table(header: list[str], rows: list[list[str]]) -> list[str]:
    return [_row(header), _row(["---"] * len(header)), *(_row(r) for r in rows)]


def render(report: Report) -> str:
    from bench.queue_bench import HIGH, LOW

    cfg = report.config
    results = list(report.results.values())
    saq = report.results.get("saq")
    lines: list[str] = []
    pin = (
        "redis-server pinned to CPU 0, each worker/consumer process to CPU 1 (taskset); "
        "paced producers on CPU 0"
        if report.pinned
        else "NOT pinned (taskset missing or fewer than 2 CPUs)"
    )
    lines += [
        f"Queue bench: {cfg.jobs:,} no-op jobs per throughput run, best of {cfg.rounds} "
        f"round(s); enqueue runs of {cfg.enqueue_jobs:,} jobs; latency at a paced "
        f"{cfg.latency_rate:g} jobs/s for {cfg.latency_seconds:g} s "
        f"(+{cfg.latency_warmup_seconds:g} s warm-up) at concurrency {cfg.latency_concurrency}.",
        f"CPU: {pin}. Load average before/after: {report.load_before[0]:.2f} / "
        f"{report.load_after[0]:.2f}. Took {report.seconds:.0f} s.",
        "Versions: " + ", ".join(f"{k} {v}" for k, v in report.versions.items()) + ".",
        "",
    ]
    header = [
        "system",
        "enqueue/s (1 call/job)",
        "enqueue/s (batched)",
        f"c={LOW} jobs/s",
        f"c={HIGH} jobs/s",
        "latency p50 ms",
        "latency p99 ms",
    ]
    rows = []
    for r in results:
        name = f"{r.system} ({r.note})" if r.note else r.system
        rows.append(
            [
                name,
                _n(_best(r.enqueue_single)),
                _n(_best(r.enqueue_batched)),
                _n(_rate(r, LOW)),
                _n(_rate(r, HIGH)),
                _n(r.p(50), 3),
                _n(r.p(99), 3),
            ]
        )
    lines += _table(header, rows)
    if saq is not None:
        lines += ["", "Ratios vs saq (throughput: higher is better; latency: lower is better):", ""]
        rows = []
        for r in results:
            rows.append(
                [
                    r.system,
                    _ratio(_best(r.enqueue_single), _best(saq.enqueue_single)),
                    _ratio(_best(r.enqueue_batched), _best(saq.enqueue_batched)),
                    _ratio(_rate(r, LOW), _rate(saq, LOW)),
                    _ratio(_rate(r, HIGH), _rate(saq, HIGH)),
                    _ratio(r.p(50), saq.p(50)),
                    _ratio(r.p(99), saq.p(99)),
                ]
            )
        lines += _table(header, rows)
    lines += ["", "Cost per job (from the best round):", ""]
    cost_header = [
        "system",
        f"round trips c={LOW}",
        f"round trips c={HIGH}",
        f"Redis cmds c={LOW}",
        f"Redis cmds c={HIGH}",
        f"worker CPU µs c={LOW}",
        f"worker CPU µs c={HIGH}",
        f"Redis CPU µs c={LOW}",
        f"Redis CPU µs c={HIGH}",
    ]
    rows = []
    for r in results:
        low, high = r.best(LOW), r.best(HIGH)

        def f(p: Phase | None, attr: str, d: int) -> str:
            return _n(getattr(p, attr), d) if p else "–"

        rows.append(
            [
                r.system,
                f(low, "round_trips_per_job", 2),
                f(high, "round_trips_per_job", 2),
                f(low, "commands_per_job", 1),
                f(high, "commands_per_job", 1),
                f(low, "worker_cpu_us_per_job", 0),
                f(high, "worker_cpu_us_per_job", 0),
                f(low, "redis_cpu_us_per_job", 0),
                f(high, "redis_cpu_us_per_job", 0),
            ]
        )
    lines += _table(cost_header, rows)
    pw = report.results.get("preview-worker")
    if pw is not None:
        lines += ["", *_detail(pw)]
        if saq is not None:
            lines += ["", *_targets(pw, saq)]
    lines += ["", "Latency, enqueue call to handler start (ms):"]
    for r in results:
        if r.latency_ms:
            qs = ", ".join(f"p{q:g} {r.p(q):.3f}" for q in (50, 90, 99, 99.9))
            lines.append(
                f"- {r.system}: {qs}, max {max(r.latency_ms):.3f} "
                f"({len(r.latency_ms)} jobs at {r.producer_rate:.0f}/s, "
                f"concurrency {r.latency_concurrency})"
            )
    lines += ["", "All rounds (jobs/s):"]
    for r in results:
        per = "; ".join(
            f"c={c}: " + ", ".join(_n(p.jobs_per_second) for p in phases)
            for c, phases in sorted(r.work.items())
        )
        lines.append(f"- {r.system}: {per}")
    for name, reason in report.skipped.items():
        lines.append(f"- {name}: SKIPPED ({reason})")
    from bench.queue_bench import PEERS

    own = [(r.system, p) for r in results if r.system not in PEERS for p in r.problems]
    seen = [(r.system, p) for r in results if r.system in PEERS for p in r.problems]
    lines.append("")
    if own:
        lines.append("PROBLEMS (the bench fails):")
        lines += [f"- {system}: {p}" for system, p in own]
    elif checked := ", ".join(r.system for r in results if r.system not in PEERS):
        lines.append(f"Checks ({checked}): every job ran exactly once; none left waiting/active.")
    if seen:
        lines.append("Observed in the peers (their behaviour, not a bench failure):")
        lines += [f"- {system}: {p}" for system, p in seen]
    return "\n".join(lines)


def _detail(pw: Result) -> list[str]:
    from bench.queue_bench import HIGH, LOW

    out = [
        "preview-worker, per job (Queue calls are one round trip each; commands from "
        "INFO commandstats, those run inside Lua scripts included):",
        "",
    ]
    for c in (LOW, HIGH):
        phase = pw.best(c)
        if phase is None:
            continue
        calls = ", ".join(f"{k} {v:.4f}" for k, v in phase.per_job(phase.calls).items())
        top = ", ".join(f"{k} {v:.3f}" for k, v in list(phase.per_job(phase.commands).items())[:14])
        out.append(f"- c={c}: Queue calls: {calls}")
        out.append(f"- c={c}: commands: {top}")
    return out


def _targets(pw: Result, saq: Result) -> list[str]:
    from bench.queue_bench import HIGH, LOW

    out = ["Targets (issue #2):"]
    for c, target in ((LOW, TARGET_LOW), (HIGH, TARGET_HIGH)):
        mine, theirs = _rate(pw, c), _rate(saq, c)
        if mine is None or theirs is None or not theirs:
            out.append(f"- c={c}: not measured")
            continue
        ratio = mine / theirs
        verdict = "met" if ratio >= target else "NOT met"
        out.append(f"- c={c}: {ratio:.2f}× saq (target ≥ {target:g}×): {verdict}")
    p99 = pw.p(99)
    if math.isnan(p99):
        out.append("- p99 latency: not measured")
    else:
        verdict = "met" if p99 < TARGET_P99_MS else "NOT met"
        out.append(f"- p99 latency {p99:.3f} ms (target < {TARGET_P99_MS:g} ms): {verdict}")
    return out
