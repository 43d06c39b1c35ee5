"""The error type of the audit: bad input, reported as one line that names the file and the problem."""

from __future__ import annotations

from volbias.data.errors import DataError


class AuditError(DataError):
    """Bad audit input (unreadable file, out-of-range map, mismatched grid, missing case, bad option)."""
