"""A run's outcome: ``done``, or ``failed`` when none of its items has a result and some failed.

Items a rerun finds stored are counted by what they hold: an earlier failure is not a result, so a
run whose every item failed exits 1 the first time and every time after, until ``--retry-failed``
gives them another try (or a stored result shows the task does work for these inputs).
"""

from __future__ import annotations

from .run_stats import RunStats


def outcome(s: RunStats) -> str:
    """``failed`` when nothing succeeded, in this run or stored by an earlier one, and something failed."""
    failed = s.items_failed + s.items_rejected + s.items_skipped_failed
    succeeded = s.items_done + s.items_skipped - s.items_skipped_failed
    return "failed" if failed and not succeeded else "done"


def failure_message(summary: dict) -> str:
    """The one line a failed run ends with."""
    export = f"personahub export {summary['task']} --all --full"
    if summary["items_failed"]:
        return f"all {summary['items_failed']} items failed or were rejected; their errors are stored ({export})"
    return (f"all {summary['items_skipped_failed']} items failed in earlier runs and none was tried again: "
            f"add --retry-failed to try them again (their errors: {export})")
