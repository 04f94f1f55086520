"""Cancellation of a running job: pipelines check `should_cancel()` between optimisation steps."""

from __future__ import annotations


class JobCancelled(Exception):
    """Raised inside a pipeline when its job was cancelled; nothing is exported."""
