"""The error a job raises for input that no retry can fix."""

from __future__ import annotations


class JobInputError(ValueError):
    """The job was given something it cannot work with (an unknown call, a bad range).

    It is never retried: the message says what was wrong and what to send instead.
    """
