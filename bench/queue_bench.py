"""Queue benchmark: preview-worker side by side with saq, arq and a bare BLMOVE+LREM loop.

    .venv/bin/python -m bench.queue_bench [--jobs 20000] [--rounds 2] [--only NAME ...]

Measures, per system, on one fresh redis-server (``--save "" --appendonly no``) pinned to CPU 0
with every consumer pinned to CPU 1 (``taskset``):

- enqueue/s: one enqueue call per job, awaited in turn; and batched (preview-worker's pipelined
  ``enqueue_many``, 100 overlapping calls for saq/arq, 500-command pipelines for the bare loop);
- no-op jobs/s at concurrency 1 and 64 in one worker process (a pre-filled queue; the rate is
  taken between the first and the last handler start);
- enqueue->handler-start latency p50/p99 at a paced 200 jobs/s for 10 s (after 1 s of warm-up);
- Redis round trips per job (client writes: one per command or pipeline) and Redis commands per
  job (``INFO commandstats`` deltas, commands inside scripts included); worker and Redis CPU.

Throughput phases run ``--rounds`` times, systems interleaved; the best round is reported (the
machine is shared: a slower round measured someone else's load). Peers live in
``.tools/bench-venv`` (created on first use, pinned versions, never project dependencies).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench import peers
from bench.common import percentile
from bench.redis_proc import BenchRedis, Probe, delta
from bench.report import render
from bench.runners import ROOT, RunnerError, System

SYSTEMS = ("preview-worker", "saq", "arq", "bare")
PEERS = ("saq", "arq")
"""Anomalies seen in the peers are reported, not failures of the bench."""
LOW, HIGH = 1, 64


@dataclass
class Config:
    jobs: int = 20_000
    enqueue_jobs: int = 5_000
    rounds: int = 2
    latency_rate: float = 200.0
    latency_seconds: float = 10.0
    latency_warmup_seconds: float = 1.0
    latency_concurrency: int = 1
    systems: tuple[str, ...] = SYSTEMS
    pin: bool = True
    redis_url: str | None = None
    arq_poll_delay: float = 0.0
    peers_venv: Path = ROOT / peers.DEFAULT_DIR
    timeout: float = 600.0


@dataclass
class Phase:
    """One consuming run of ``jobs`` jobs: its rate and raw counters of what it cost."""

    jobs: int
    jobs_per_second: float
    round_trips: int
    """Client writes of the worker process: one per command or pipeline."""
    commands: dict[str, int]
    """INFO commandstats deltas (commands inside Lua scripts included)."""
    calls: dict[str, int]
    """preview-worker only: Queue method calls (each one round trip)."""
    worker_cpu_seconds: float
    redis_cpu_seconds: float

    @property
    def round_trips_per_job(self) -> float:
        return self.round_trips / self.jobs

    @property
    def commands_per_job(self) -> float:
        return sum(self.commands.values()) / self.jobs

    @property
    def worker_cpu_us_per_job(self) -> float:
        return self.worker_cpu_seconds / self.jobs * 1e6

    @property
    def redis_cpu_us_per_job(self) -> float:
        return self.redis_cpu_seconds / self.jobs * 1e6

    def per_job(self, counts: dict[str, int]) -> dict[str, float]:
        ordered = sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))
        return {k: v / self.jobs for k, v in ordered}


@dataclass
class Result:
    system: str
    note: str = ""
    enqueue_single: list[float] = field(default_factory=list)
    enqueue_batched: list[float] = field(default_factory=list)
    work: dict[int, list[Phase]] = field(default_factory=dict)
    latency_ms: list[float] = field(default_factory=list)
    latency_concurrency: int = 1
    producer_rate: float = 0.0
    duplicates: int = 0
    problems: list[str] = field(default_factory=list)

    def best(self, concurrency: int) -> Phase | None:
        phases = self.work.get(concurrency) or []
        return max(phases, key=lambda p: p.jobs_per_second) if phases else None

    def p(self, q: float) -> float:
        return percentile(self.latency_ms, q)


@dataclass
class Report:
    config: Config
    results: dict[str, Result]
    pinned: bool
    versions: dict[str, str]
    skipped: dict[str, str]
    load_before: tuple[float, float, float]
    load_after: tuple[float, float, float]
    seconds: float
    redis_version: str


def can_pin() -> bool:
    return shutil.which("taskset") is not None and {0, 1} <= os.sched_getaffinity(0)


def systems_for(cfg: Config, log: Callable[[str], None]) -> tuple[list[System], dict[str, str]]:
    here = Path(sys.executable)
    out: list[System] = []
    skipped: dict[str, str] = {}
    peer_python: Path | None = None
    if {"saq", "arq"} & set(cfg.systems):
        try:
            peer_python = peers.ensure(cfg.peers_venv)
        except peers.PeersUnavailable as exc:
            log(f"peers skipped: {exc}")
            for name in ("saq", "arq"):
                skipped[name] = str(exc).splitlines()[0]
    for name in cfg.systems:
        if name == "preview-worker":
            out.append(System(name, here, "bench.runner_pw"))
        elif name == "bare":
            out.append(System(name, here, "bench.runner_bare", note="BLMOVE+LREM loop, redis-py"))
        elif name == "saq" and peer_python is not None:
            out.append(System(name, peer_python, "bench.runner_saq", note="saq defaults"))
        elif name == "arq" and peer_python is not None:
            delay = f"poll_delay={cfg.arq_poll_delay:g}"
            out.append(
                System(name, peer_python, "bench.runner_arq", options=(delay,), note=f"arq {delay}")
            )
    return out, skipped


class Bench:
    def __init__(self, cfg: Config, url: str, pinned: bool, log: Callable[[str], None]) -> None:
        self.cfg = cfg
        self.url = url
        self.log = log
        self.probe = Probe(url)
        self.worker_pin = ["taskset", "-c", "1"] if pinned else []
        self.side_pin = ["taskset", "-c", "0"] if pinned else []

    def run(self, system: System, mode: str, pin: Sequence[str], **args: Any) -> dict[str, Any]:
        from bench import runners

        return runners.run(system, mode, self.url, pin, self.cfg.timeout, **args)

    def enqueue_phase(self, system: System, result: Result) -> None:
        self.probe.flush()
        n = self.cfg.enqueue_jobs
        r = self.run(system, "enqueue", self.worker_pin, n=n, prefix="e")
        if r["created"] != n:
            result.problems.append(f"enqueue created {r['created']} of {n}")
        result.enqueue_single.append(n / r["seconds"])

    def work_phase(self, system: System, result: Result, concurrency: int) -> Phase:
        cfg = self.cfg
        self.probe.flush()
        n = cfg.jobs
        r = self.run(
            system, "enqueue", self.worker_pin, n=n, batched=True, prefix=f"c{concurrency}-"
        )
        if r["created"] != n:
            result.problems.append(f"batched enqueue created {r['created']} of {n}")
        result.enqueue_batched.append(n / r["seconds"])
        before, cpu_before = self.probe.commands(), self.probe.cpu_seconds()
        w = self.run(system, "work", self.worker_pin, n=n, concurrency=concurrency)
        commands = delta(self.probe.commands(), before)
        redis_cpu = self.probe.cpu_seconds() - cpu_before
        commands.pop("INFO", None)  # our own probe
        self.check(result, w, n, f"c={concurrency}")
        phase = Phase(
            jobs=n,
            jobs_per_second=w["jobs_per_second"],
            round_trips=w["round_trips"],
            commands=commands,
            calls=dict(w.get("calls", {})),
            worker_cpu_seconds=w["cpu_seconds"],
            redis_cpu_seconds=redis_cpu,
        )
        result.work.setdefault(concurrency, []).append(phase)
        self.log(
            f"  {system.name:<14} c={concurrency:<3} {phase.jobs_per_second:8.0f} jobs/s  "
            f"{phase.round_trips_per_job:5.2f} round trips/job  "
            f"{phase.worker_cpu_us_per_job:6.0f} us worker CPU/job"
        )
        return phase

    def check(self, result: Result, w: dict[str, Any], n: int, where: str) -> None:
        """Counters must agree: every job ran, none is left waiting or active."""
        unique = w["count"] - w["duplicates"]
        result.duplicates += w["duplicates"]
        if unique != n:
            result.problems.append(f"{where}: {unique} distinct jobs ran, expected {n}")
        if w["duplicates"]:
            result.problems.append(f"{where}: {w['duplicates']} job(s) ran twice")
        depths = w.get("depths", {})
        left = {k: v for k, v in depths.items() if k in ("waiting", "active") and v}
        if left:
            result.problems.append(f"{where}: left in the queue: {left}")
        completed = w.get("outcomes", {}).get("completed")
        if completed is not None and int(completed) < n:
            result.problems.append(f"{where}: {int(completed)} completed, expected {n}")

    def latency_phase(self, system: System, result: Result) -> None:
        from bench.runners import Background

        cfg = self.cfg
        self.probe.flush()
        warm = int(cfg.latency_rate * cfg.latency_warmup_seconds)
        measured = int(cfg.latency_rate * cfg.latency_seconds)
        total = warm + measured
        consumer = Background(
            system,
            "work",
            self.url,
            self.worker_pin,
            n=total,
            concurrency=cfg.latency_concurrency,
            prefix="l",
        )
        try:
            consumer.wait_ready(60)
            p = self.run(
                system,
                "produce",
                self.side_pin,
                n=total,
                rate=cfg.latency_rate,
                warmup=warm,
                prefix="l",
            )
            w = consumer.result(timeout=60)
        finally:
            consumer.kill()
        self.check(result, w, total, "latency")
        result.latency_ms = list(w["latencies_ms"])
        result.latency_concurrency = cfg.latency_concurrency
        result.producer_rate = total / p["seconds"]
        if len(result.latency_ms) != measured:
            result.problems.append(
                f"latency: {len(result.latency_ms)} samples, expected {measured}"
            )
        self.log(
            f"  {system.name:<14} latency p50 {result.p(50):7.3f} ms  p99 {result.p(99):7.3f} ms"
            f"  ({len(result.latency_ms)} jobs at {result.producer_rate:.0f}/s)"
        )


def run_bench(cfg: Config, log: Callable[[str], None] | None = None) -> Report:
    say = log or (lambda line: print(line, file=sys.stderr, flush=True))
    started = time.monotonic()
    load_before = os.getloadavg()
    pinned = cfg.pin and can_pin()
    if cfg.pin and not pinned:
        say("not pinned: taskset missing or CPUs 0 and 1 not both available")
    systems, skipped = systems_for(cfg, say)
    original_affinity = os.sched_getaffinity(0)
    server: BenchRedis | None = None
    try:
        if cfg.redis_url is None:
            server = BenchRedis(pin=["taskset", "-c", "0"] if pinned else []).start()
            url = server.url
        else:
            url = cfg.redis_url
        if pinned:
            os.sched_setaffinity(0, {0})  # keep this process off the consumers' CPU
        bench = Bench(cfg, url, pinned, say)
        redis_version = str(bench.probe.client.info("server")["redis_version"])
        results = {s.name: Result(s.name, note=s.note) for s in systems}
        for round_no in range(1, cfg.rounds + 1):
            say(f"round {round_no}/{cfg.rounds}")
            for system in systems:
                try:
                    bench.enqueue_phase(system, results[system.name])
                    for concurrency in (LOW, HIGH):
                        bench.work_phase(system, results[system.name], concurrency)
                except RunnerError as exc:
                    results[system.name].problems.append(str(exc))
                    say(f"  {system.name}: {exc}")
        say("latency")
        for system in systems:
            try:
                bench.latency_phase(system, results[system.name])
            except RunnerError as exc:
                results[system.name].problems.append(str(exc))
                say(f"  {system.name}: {exc}")
        bench.probe.close()
    finally:
        if pinned:
            os.sched_setaffinity(0, original_affinity)
        if server is not None:
            server.stop()
    versions = {"redis-server": redis_version, "python": sys.version.split()[0]}
    versions.update(_project_versions())
    if {"saq", "arq"} & {s.name for s in systems}:
        peer_versions = peers.installed_versions(peers.python_of(cfg.peers_venv))
        for name in ("saq", "arq", "redis", "hiredis"):
            if name in peer_versions:
                versions[f"peers: {name}"] = peer_versions[name]
    return Report(
        config=cfg,
        results=results,
        pinned=pinned,
        versions=versions,
        skipped=skipped,
        load_before=load_before,
        load_after=os.getloadavg(),
        seconds=time.monotonic() - started,
        redis_version=redis_version,
    )


def _project_versions() -> dict[str, str]:
    from importlib.metadata import PackageNotFoundError, version

    out = {}
    for name in ("preview-worker", "redis", "hiredis"):
        with contextlib.suppress(PackageNotFoundError):
            out[name] = version(name)
    return out


def parse_args(argv: Sequence[str] | None) -> tuple[Config, Path | None]:
    parser = argparse.ArgumentParser(
        prog="python -m bench.queue_bench",
        description="Queue throughput/latency: preview-worker vs saq, arq and a bare loop.",
    )
    parser.add_argument("--jobs", type=int, default=20_000, help="jobs per throughput run")
    parser.add_argument("--enqueue-jobs", type=int, default=5_000, help="jobs per enqueue run")
    parser.add_argument("--rounds", type=int, default=2, help="throughput rounds (best is shown)")
    parser.add_argument("--latency-rate", type=float, default=200.0)
    parser.add_argument("--latency-seconds", type=float, default=10.0)
    parser.add_argument("--latency-concurrency", type=int, default=1)
    parser.add_argument("--only", action="append", choices=SYSTEMS, help="repeatable")
    parser.add_argument("--no-pin", action="store_true", help="do not use taskset")
    parser.add_argument("--redis-url", help="use this Redis (FLUSHALLed!) instead of a fresh one")
    parser.add_argument("--arq-poll-delay", type=float, default=0.0)
    parser.add_argument("--json", type=Path, help="also write every measurement here")
    args = parser.parse_args(argv)
    for name in ("jobs", "enqueue_jobs", "rounds", "latency_concurrency"):
        if getattr(args, name) < 1:
            parser.error(f"--{name.replace('_', '-')} must be at least 1")
    if args.latency_rate <= 0 or args.latency_seconds <= 0:
        parser.error("--latency-rate and --latency-seconds must be positive")
    cfg = Config(
        jobs=args.jobs,
        enqueue_jobs=args.enqueue_jobs,
        rounds=args.rounds,
        latency_rate=args.latency_rate,
        latency_seconds=args.latency_seconds,
        latency_concurrency=args.latency_concurrency,
        systems=tuple(args.only) if args.only else SYSTEMS,
        pin=not args.no_pin,
        redis_url=args.redis_url,
        arq_poll_delay=args.arq_poll_delay,
    )
    return cfg, args.json


def to_json(report: Report) -> dict[str, Any]:
    from dataclasses import asdict

    data = asdict(report)
    data["config"]["peers_venv"] = str(report.config.peers_venv)
    for name, result in report.results.items():
        data["results"][name]["latency_p50_ms"] = result.p(50)
        data["results"][name]["latency_p99_ms"] = result.p(99)
    return data


def main(argv: Sequence[str] | None = None) -> int:
    cfg, json_path = parse_args(argv)
    try:
        report = run_bench(cfg)
    except (RuntimeError, OSError) as exc:
        print(f"queue bench failed: {exc}", file=sys.stderr)
        return 1
    print(render(report))
    if json_path is not None:
        json_path.write_text(json.dumps(to_json(report), indent=2, default=str) + "\n")
    own = [p for r in report.results.values() if r.system not in PEERS for p in r.problems]
    return 1 if own else 0


if __name__ == "__main__":
    sys.exit(main())
