"""Every Redis key of a queue, in one place. See ``docs/queue-protocol.md``.

All keys of queue ``Q`` start with ``pw:{Q}:``: the ``{Q}`` hash tag puts them in one Redis
Cluster slot, so the Lua scripts run unchanged on a cluster.
"""

from __future__ import annotations

from dataclasses import dataclass

PRIORITIES = ("high", "normal", "low")
"""Strict order in which waiting lists are served."""


@dataclass(frozen=True)
class Keys:
    queue: str

    @property
    def base(self) -> str:
        return f"pw:{{{self.queue}}}:"

    def wait(self, priority: str) -> str:
        """LIST of job ids; producers LPUSH, workers take from the right (FIFO)."""
        return f"{self.base}wait:{priority}"

    @property
    def waits(self) -> tuple[str, ...]:
        """The wait lists in the order they are served (``PRIORITIES``)."""
        return tuple(self.wait(priority) for priority in PRIORITIES)

    @property
    def wake(self) -> str:
        """LIST holding at most one token while work may be waiting; idle workers block on it."""
        return f"{self.base}wake"

    @property
    def workers(self) -> str:
        """SET of live owner ids (each has a lease and an active list)."""
        return f"{self.base}workers"

    @property
    def delayed(self) -> str:
        """ZSET of job ids scored by the ms timestamp they become due (retries, delays)."""
        return f"{self.base}delayed"

    @property
    def dead(self) -> str:
        """LIST of dead-letter entries (JSON), newest first."""
        return f"{self.base}dead"

    @property
    def completed(self) -> str:
        """ZSET of completed job ids scored by finish time (retention index)."""
        return f"{self.base}completed"

    @property
    def failed(self) -> str:
        """ZSET of finally failed job ids scored by finish time (retention index)."""
        return f"{self.base}failed"

    @property
    def job_prefix(self) -> str:
        return f"{self.base}job:"

    def job(self, job_id: str) -> str:
        """HASH: the job's payload, options and status record."""
        return self.job_prefix + job_id

    def active(self, owner: str) -> str:
        """LIST of job ids the owner holds; moved into atomically by the take script."""
        return f"{self.base}active:{owner}"

    def lease(self, owner: str) -> str:
        """STRING token with a PX TTL: the owner is alive while it exists."""
        return f"{self.base}lease:{owner}"
