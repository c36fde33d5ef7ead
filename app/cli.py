"""``preview-worker`` command line. Configuration comes from env vars (``docs/configuration.md``)
and flags; a bad value gets a clear message and exit code 2, never a traceback."""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import sys
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from typing import Any, NoReturn, TypeVar

import msgspec
from redis.exceptions import RedisError

from . import __version__
from .connection import Client, connect
from .errors import ConfigError, PayloadError, PreviewWorkerError
from .logs import configure
from .payload import decode_job, job_schema
from .queue import JobOptions, Queue, Retention
from .settings import ENV_VARS, Settings

T = TypeVar("T")
EXIT_OK, EXIT_FAIL, EXIT_USAGE, EXIT_UNREADABLE = 0, 1, 2, 3


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        self.print_usage(sys.stderr)
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message}\n")


FLAG_SETTINGS = {
    "queue": "--queue",
    "concurrency": "--concurrency",
    "health_port": "--health-port",
    "worker_id": "--worker-id",
}


def _settings(args: argparse.Namespace) -> Settings:
    """Settings from the environment, with flags parsed by the same rules as their variables."""
    rules = {var.attr: var for var in ENV_VARS}
    overrides: dict[str, Any] = {}
    for attr, flag in FLAG_SETTINGS.items():
        value = getattr(args, attr, None)
        if value is None:
            continue
        try:
            overrides[attr] = rules[attr].parse(str(value))
        except ValueError as exc:
            raise ConfigError(f"{flag} {value!r}: {exc}") from None
    return Settings.from_env(**overrides)


def _queue_from(settings: Settings) -> tuple[Client, Queue]:
    from .worker import options_from

    client = connect(settings)
    queue = Queue(
        client,
        name=settings.queue,
        max_payload_bytes=settings.max_payload_bytes,
        queue_max=settings.queue_max,
        defaults=options_from(settings),
    )
    return client, queue


def _with_queue(args: argparse.Namespace, body: Callable[[Queue, Settings], Awaitable[int]]) -> int:
    settings = _settings(args)

    async def go() -> int:
        client, queue = _queue_from(settings)
        try:
            return await body(queue, settings)
        finally:
            await client.aclose()

    try:
        return asyncio.run(go())
    except (RedisError, OSError) as exc:
        print(
            f"error: Redis at {settings.redacted_redis_url()} failed: {type(exc).__name__}: {exc}",
            file=sys.stderr,
        )
        return EXIT_FAIL


def _print_json(value: Any) -> None:
    sys.stdout.write(msgspec.json.encode(value).decode() + "\n")


# ---- run -------------------------------------------------------------------------------------


def cmd_run(args: argparse.Namespace) -> int:
    settings = _settings(args)
    configure(settings.log_level, settings.log_format)
    from .worker import Worker

    worker = Worker(settings=settings)
    asyncio.run(worker.run(burst=args.burst))
    return EXIT_OK


# ---- enqueue ---------------------------------------------------------------------------------


def _retention(text: str) -> Retention:
    try:
        age, count = text.split(":")
        return Retention(age=int(age), count=int(count))
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected AGE_SECONDS:COUNT (e.g. 3600:100), got {text!r}"
        ) from None


def _read_input(source: str) -> bytes:
    if source == "-":
        return sys.stdin.buffer.read()
    return Path(source).read_bytes()


def split_documents(data: bytes) -> list[bytes]:
    """One JSON document, or JSON lines: several non-empty lines that each hold one object.
    A pretty-printed document with a syntax error stays one document (one error, at ``$``)."""
    stripped = data.strip()
    if not stripped:
        return []
    lines = [line.strip() for line in stripped.splitlines() if line.strip()]
    if len(lines) > 1 and all(line.startswith(b"{") and line.endswith(b"}") for line in lines):
        try:
            json.loads(stripped)
        except (ValueError, UnicodeDecodeError):
            return lines
    return [stripped]


class Progress:
    """A one-line progress bar on stderr, shown only for many jobs on a terminal."""

    def __init__(self, total: int) -> None:
        self.total = total
        self.enabled = total > 1 and sys.stderr.isatty()

    def update(self, done: int) -> None:
        if not self.enabled:
            return
        width = 30
        filled = int(width * done / self.total)
        bar = "#" * filled + "-" * (width - filled)
        sys.stderr.write(f"\r[{bar}] {done}/{self.total}")
        if done == self.total:
            sys.stderr.write("\n")
        sys.stderr.flush()


def cmd_enqueue(args: argparse.Namespace) -> int:
    try:
        docs = split_documents(_read_input(args.file))
    except OSError as exc:
        print(f"error: cannot read {args.file}: {exc.strerror or exc}", file=sys.stderr)
        return EXIT_UNREADABLE
    if not docs:
        print("error: no job in the input", file=sys.stderr)
        return EXIT_USAGE
    settings = _settings(args)
    try:
        options = JobOptions(
            attempts=settings.attempts if args.attempts is None else args.attempts,
            backoff_seconds=settings.backoff_seconds if args.backoff is None else args.backoff,
            backoff_max_seconds=(
                settings.backoff_max_seconds if args.backoff_max is None else args.backoff_max
            ),
            remove_on_complete=args.remove_on_complete,
            remove_on_fail=args.remove_on_fail,
        )
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_USAGE

    async def body(queue: Queue, settings: Settings) -> int:
        failures = 0
        progress = Progress(len(docs))
        if args.delay:
            results: list[Any] = []
            for doc in docs:
                try:
                    results.append(
                        await queue.enqueue(doc, options=options, delay_seconds=args.delay)
                    )
                except PreviewWorkerError as exc:
                    results.append(exc)
        else:
            results = []
            chunk = 500
            for start in range(0, len(docs), chunk):
                part = docs[start : start + chunk]
                results.extend(await queue.enqueue_many(part, options=options))
                progress.update(len(results))
        for number, result in enumerate(results, 1):
            where = f"job {number}" if len(docs) > 1 else "job"
            if isinstance(result, PayloadError):
                failures += 1
                print(f"error: {where}: {result.reason}: {result.message}", file=sys.stderr)
            elif isinstance(result, PreviewWorkerError):
                failures += 1
                print(f"error: {where}: {result}", file=sys.stderr)
            elif args.json:
                _print_json(
                    {"jobId": result.job_id, "created": result.created, "state": result.state}
                )
            else:
                verb = "enqueued" if result.created else "exists  "
                print(f"{verb} {result.job_id} ({result.state})")
        if len(docs) > 1:
            created = sum(1 for r in results if getattr(r, "created", False))
            print(
                f"{len(docs)} jobs: {created} enqueued, {len(docs) - created - failures} "
                f"already known, {failures} refused",
                file=sys.stderr,
            )
        return EXIT_USAGE if failures else EXIT_OK

    return _with_queue(args, body)


# ---- validate / schema -----------------------------------------------------------------------


def cmd_validate(args: argparse.Namespace) -> int:
    settings = Settings.from_env()
    worst = EXIT_OK
    for name in args.files:
        try:
            data = Path(name).read_bytes()
        except OSError as exc:
            print(f"{name}: cannot read: {exc.strerror or exc}", file=sys.stderr)
            worst = EXIT_UNREADABLE
            continue
        docs = split_documents(data) or [data]
        for number, doc in enumerate(docs, 1):
            label = name if len(docs) == 1 else f"{name}:{number}"
            try:
                decode_job(doc, max_bytes=settings.max_payload_bytes)
            except PayloadError as exc:
                print(f"{label}: {exc.path}: {exc.reason}: {exc.message}")
                worst = max(worst, EXIT_USAGE)
            else:
                if not args.quiet:
                    print(f"{label}: valid")
    return worst


def cmd_schema(args: argparse.Namespace) -> int:
    sys.stdout.write(json.dumps(job_schema(), indent=2, ensure_ascii=False) + "\n")
    return EXIT_OK


# ---- status / stats / dlq ------------------------------------------------------------------


def cmd_status(args: argparse.Namespace) -> int:
    async def body(queue: Queue, settings: Settings) -> int:
        status = await queue.status(args.job_id)
        if status is None:
            entries = await queue.dlq_find(args.job_id)
            if entries:
                entry = entries[0][1]
                if args.json:
                    _print_json({"jobId": args.job_id, "state": "dead", "deadLetter": entry})
                else:
                    print(f"{args.job_id}: dead ({entry.reason}: {entry.error})")
                return EXIT_OK
            print(f"error: no job {args.job_id!r} in queue {settings.queue!r}", file=sys.stderr)
            return EXIT_FAIL
        if args.json:
            _print_json(status)
            return EXIT_OK
        print(f"{status.jobId}: {status.state}")
        for key in (
            "priority",
            "attempts",
            "maxAttempts",
            "enqueuedAt",
            "startedAt",
            "finishedAt",
            "dueAt",
            "reason",
            "lastError",
            "worker",
        ):
            value = getattr(status, key)
            if value not in (None, ""):
                print(f"  {key}: {value}")
        if status.result is not None:
            print(f"  result: {json.dumps(status.result)}")
        return EXIT_OK

    return _with_queue(args, body)


def cmd_stats(args: argparse.Namespace) -> int:
    async def body(queue: Queue, settings: Settings) -> int:
        stats = await queue.stats()
        if args.json:
            _print_json({"queue": settings.queue, **stats})
        else:
            for state, count in stats.items():
                print(f"{state:10} {count}")
        return EXIT_OK

    return _with_queue(args, body)


def cmd_dlq(args: argparse.Namespace) -> int:
    async def body(queue: Queue, settings: Settings) -> int:
        action = args.dlq_action
        if action == "list":
            entries = await queue.dlq_entries(0, args.limit - 1)
            if args.json:
                _print_json([e for _, e in entries])
            else:
                for _, e in entries:
                    print(f"{e.failedAt}  {e.jobId or '<no id>'}  {e.reason}: {e.error}")
                print(f"{len(entries)} shown of {await queue.redis.llen(queue.keys.dead)}")
            return EXIT_OK
        if action == "show":
            found = await queue.dlq_find(args.job_id)
            if not found:
                print(f"error: no dead-letter entry for {args.job_id!r}", file=sys.stderr)
                return EXIT_FAIL
            for _, e in found:
                _print_json(e)
            return EXIT_OK
        target = None if args.all else args.job_id
        if target is None and not args.all:
            print("error: give a JOB_ID or --all", file=sys.stderr)
            return EXIT_USAGE
        if action == "requeue":
            done, refused = await queue.dlq_requeue(target)
            for job_id in done:
                print(f"requeued {job_id}")
            for line in refused:
                print(f"refused  {line}", file=sys.stderr)
            if not done and not refused:
                print("nothing to requeue", file=sys.stderr)
                return EXIT_FAIL if target else EXIT_OK
            return EXIT_FAIL if refused else EXIT_OK
        removed = await queue.dlq_purge(target)
        print(f"purged {removed} entr{'y' if removed == 1 else 'ies'}")
        return EXIT_OK if removed or args.all else EXIT_FAIL

    return _with_queue(args, body)


# ---- demo -------------------------------------------------------------------------------------


def cmd_demo(args: argparse.Namespace) -> int:
    from .demo import run_demo

    return run_demo(Path(args.data_dir))


# ---- parser -----------------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="preview-worker",
        description="Render board-game tutorial preview videos from a Redis queue.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)

    def queue_flags(p: argparse.ArgumentParser) -> None:
        p.add_argument("--queue", help="queue name (env PREVIEW_QUEUE)")

    p = sub.add_parser("run", help="run a worker until SIGTERM/SIGINT")
    queue_flags(p)
    p.add_argument("--concurrency", type=int, help="jobs at once (env PREVIEW_WORKER_CONCURRENCY)")
    p.add_argument("--health-port", type=int, help="health/metrics port, 0 = off")
    p.add_argument("--worker-id", help="worker identity (env PREVIEW_WORKER_ID)")
    p.add_argument("--burst", action="store_true", help="exit once the queue is empty")
    p.set_defaults(func=cmd_run)

    p = sub.add_parser("enqueue", help="enqueue one JSON job or JSON lines from FILE or stdin")
    queue_flags(p)
    p.add_argument("file", nargs="?", default="-", help="file to read, '-' for stdin (default)")
    p.add_argument(
        "--attempts", type=int, help="attempts before dead-letter (env PREVIEW_ATTEMPTS, 5)"
    )
    p.add_argument(
        "--backoff", type=float, help="first retry delay in s (env PREVIEW_BACKOFF_SECONDS, 1)"
    )
    p.add_argument(
        "--backoff-max",
        type=float,
        help="retry delay cap in s (env PREVIEW_BACKOFF_MAX_SECONDS, 300)",
    )
    p.add_argument("--delay", type=float, default=0.0, help="seconds before the job is due")
    p.add_argument(
        "--remove-on-complete",
        type=_retention,
        default=Retention(age=3600, count=100),
        metavar="AGE:COUNT",
        help="retention of completed records (3600:100)",
    )
    p.add_argument(
        "--remove-on-fail",
        type=_retention,
        default=Retention(age=86400, count=100),
        metavar="AGE:COUNT",
        help="retention of failed records (86400:100)",
    )
    p.add_argument("--json", action="store_true", help="one JSON object per job on stdout")
    p.set_defaults(func=cmd_enqueue)

    p = sub.add_parser("validate", help="check job files (0 valid, 2 invalid, 3 unreadable)")
    p.add_argument("files", nargs="+", metavar="FILE")
    p.add_argument("-q", "--quiet", action="store_true", help="print errors only")
    p.set_defaults(func=cmd_validate)

    p = sub.add_parser("status", help="a job's status record")
    queue_flags(p)
    p.add_argument("job_id", metavar="JOB_ID")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_status)

    p = sub.add_parser("stats", help="jobs per state")
    queue_flags(p)
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_stats)

    p = sub.add_parser("dlq", help="the dead-letter list")
    dlq = p.add_subparsers(dest="dlq_action", required=True, parser_class=_Parser)
    d = dlq.add_parser("list", help="newest entries first")
    queue_flags(d)
    d.add_argument("--limit", type=int, default=50)
    d.add_argument("--json", action="store_true")
    d = dlq.add_parser("show", help="every entry of one job, as JSON")
    queue_flags(d)
    d.add_argument("job_id", metavar="JOB_ID")
    for action, text in (("requeue", "re-drive as fresh jobs"), ("purge", "delete entries")):
        d = dlq.add_parser(action, help=text)
        queue_flags(d)
        group = d.add_mutually_exclusive_group(required=True)
        group.add_argument("job_id", metavar="JOB_ID", nargs="?")
        group.add_argument("--all", action="store_true")
    p.set_defaults(func=cmd_dlq)

    p = sub.add_parser("schema", help="print the job JSON Schema")
    p.set_defaults(func=cmd_schema)

    p = sub.add_parser("demo", help="embedded Redis + worker + sample jobs, end to end")
    p.add_argument("--data-dir", default="demo-data", help="where outputs go (demo-data)")
    p.set_defaults(func=cmd_demo)

    _add_plugin_commands(sub)
    return parser


def _add_plugin_commands(sub: Any) -> None:
    from . import deploy, health

    health.add_commands(sub)
    deploy.add_commands(sub)


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    func: Callable[[argparse.Namespace], int] = args.func
    try:
        return func(args)
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except PreviewWorkerError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_FAIL
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    logging.basicConfig()
    sys.exit(main())
