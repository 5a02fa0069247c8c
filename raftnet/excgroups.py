"""trio raises a nursery's errors as (possibly nested) exception groups;
code that reports one error, or maps it to an exit code, wants the first
real exception inside."""

from __future__ import annotations


def leaf(exc: BaseException) -> BaseException:
    """The first exception inside nested groups (``exc`` itself if it is none)."""
    while isinstance(exc, BaseExceptionGroup) and exc.exceptions:
        exc = exc.exceptions[0]
    return exc
