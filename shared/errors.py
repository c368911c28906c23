"""Errors that more than one layer must recognise, and which failures are passing.

A *transient* failure is the infrastructure's (a connection refused or cut, a
timeout, throttling, a 5xx, a deadlock): the same work succeeds later, so it
is retried without counting against the message. Anything else is the work's
own fault (a value PostgreSQL cannot store, a bug) and is isolated instead.
"""

from __future__ import annotations

import asyncio
import builtins
import errno
import socket

from botocore.exceptions import ClientError, ConnectionError, HTTPClientError
from sqlalchemy.exc import DBAPIError
from sqlalchemy.exc import TimeoutError as PoolTimeoutError


class PoisonMessageError(ValueError):
    """A message that can never succeed: it goes to the DLQ without retries."""


class ServiceUnavailableError(Exception):
    """A dependency (the stream, DynamoDB, PostgreSQL) failed or is too slow: 503."""


# SQLSTATE classes of a server or connection in trouble: connection exception,
# transaction rollback (serialization, deadlock), insufficient resources,
# operator intervention (shutdown, statement timeout), system error.
TRANSIENT_SQLSTATE_CLASSES = frozenset({"08", "40", "53", "57", "58"})
THROTTLING_CODES = frozenset({
    "Throttling", "ThrottlingException", "ThrottledException", "RequestLimitExceeded",
    "ProvisionedThroughputExceededException", "TooManyRequestsException", "SlowDown",
    "RequestThrottled", "RequestThrottledException", "LimitExceededException",
    "ServiceUnavailable", "InternalError", "InternalFailure", "InternalServerError",
    "RequestTimeout", "RequestTimeoutException", "TransactionInProgressException",
})  # fmt: skip


def _sqlstate(exc: BaseException) -> str | None:
    for candidate in (exc, getattr(exc, "orig", None)):
        code = getattr(candidate, "sqlstate", None) or getattr(candidate, "pgcode", None)
        if isinstance(code, str):
            return code
    return None


def _transient_one(exc: BaseException) -> bool:
    if isinstance(exc, TimeoutError | asyncio.TimeoutError | PoolTimeoutError):
        return True
    if isinstance(exc, builtins.ConnectionError | socket.gaierror):  # refused, reset, DNS
        return True
    if isinstance(exc, FileNotFoundError) and exc.errno == errno.ENOENT and exc.filename is None:
        # A unix socket that is not there, as connect(2) reports it (ENOENT,
        # no file name): PostgreSQL restarting. A missing file the work opened
        # has a name; one raised by code with a message has no errno.
        return True
    if isinstance(exc, ConnectionError | HTTPClientError | ServiceUnavailableError):
        return True
    if isinstance(exc, ClientError):
        error = exc.response.get("Error", {})
        status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0)
        return error.get("Code") in THROTTLING_CODES or status >= 500
    state = _sqlstate(exc)
    if state is not None:
        return state[:2] in TRANSIENT_SQLSTATE_CLASSES
    if isinstance(exc, DBAPIError):
        return bool(exc.connection_invalidated)
    # asyncpg's connection errors without a SQLSTATE (a connection closed mid-query)
    return type(exc).__module__.startswith("asyncpg") and "Connection" in type(exc).__name__


def is_transient(exc: BaseException) -> bool:
    """Whether `exc` (or what it wraps) is the infrastructure's passing failure."""
    if isinstance(exc, BaseExceptionGroup):
        return all(is_transient(e) for e in exc.exceptions)
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        if _transient_one(current):
            return True
        seen.add(id(current))
        current = current.__cause__ or getattr(current, "orig", None)
    return False
