"""Job handlers: plugins found through the ``preview_worker.handlers`` entry-point group.

An entry point names a factory (usually a class) called once per worker with the
:class:`~app.settings.Settings`; the object it returns is awaited once per job with a
:class:`JobContext` and returns a JSON-able result mapping stored in the job's status record.
Raise :class:`~app.errors.JobError` (or its subclasses) to fail an attempt with a reason;
any other exception is a retryable failure. See ``docs/plugins.md``.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass
from importlib.metadata import entry_points
from typing import Any, Protocol

from .payload import PreviewJob
from .settings import Settings

GROUP = "preview_worker.handlers"
log = logging.getLogger(__name__)


@dataclass(frozen=True, kw_only=True)
class JobContext:
    job: PreviewJob
    attempt: int
    """1 for the first attempt."""
    settings: Settings
    worker_id: str


class Handler(Protocol):
    async def __call__(self, ctx: JobContext) -> Mapping[str, Any]: ...


class HandlerFactory(Protocol):
    def __call__(self, settings: Settings) -> Handler: ...


class NoopHandler:
    """Does nothing and says so. Selected only explicitly (``options.renderer: noop`` or
    ``PREVIEW_DEFAULT_HANDLER=noop``): for tests and benchmarks of the queue itself."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings

    async def __call__(self, ctx: JobContext) -> Mapping[str, Any]:
        return {"handler": "noop", "rendered": False}


def load_handlers(settings: Settings) -> dict[str, Handler]:
    """Instantiate every installed handler plugin, keyed by entry-point name.

    A plugin that fails to load is logged and left out; jobs asking for it are dead-lettered
    with reason ``unknown_handler``.
    """
    handlers: dict[str, Handler] = {}
    for ep in entry_points(group=GROUP):
        try:
            factory: HandlerFactory = ep.load()
            handlers[ep.name] = factory(settings)
        except Exception:
            log.exception("handler plugin %r failed to load", ep.name)
    return handlers


def handler_name(job: PreviewJob, settings: Settings) -> str:
    renderer = job.options.renderer
    return renderer if renderer else settings.default_handler
