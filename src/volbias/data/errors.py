"""The single error type of the data layer."""

from __future__ import annotations


class DataError(ValueError):
    """Bad or unavailable input data; the message is one line naming the offending file or option."""
