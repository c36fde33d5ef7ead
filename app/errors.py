"""Exceptions shared across modules."""

from __future__ import annotations


class PreviewWorkerError(Exception):
    """Base class of this package's errors."""


class ConfigError(PreviewWorkerError):
    """A setting or flag has a bad value; the message names it."""


class QueueFullError(PreviewWorkerError):
    """Enqueue refused: the queue already holds PREVIEW_QUEUE_MAX jobs."""


class PayloadError(PreviewWorkerError):
    """A job payload is invalid, oversized or undecodable.

    ``reason`` is one of ``invalid_payload``, ``payload_too_large``, ``undecodable``;
    ``path`` is the JSON path of the offending value (``$`` for the document).
    """

    def __init__(self, reason: str, message: str, path: str = "$") -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message
        self.path = path


class JobError(PreviewWorkerError):
    """Raised by a handler to fail an attempt with a reason.

    ``retryable=False`` sends the job to the dead-letter list at once (client-side problems:
    a missing asset, a corrupt file); ``retryable=True`` retries with backoff.
    """

    def __init__(self, reason: str, message: str, *, retryable: bool) -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message
        self.retryable = retryable


class PermanentJobError(JobError):
    def __init__(self, reason: str, message: str) -> None:
        super().__init__(reason, message, retryable=False)


class RetryableJobError(JobError):
    def __init__(self, reason: str, message: str) -> None:
        super().__init__(reason, message, retryable=True)
