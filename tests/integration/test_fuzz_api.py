"""Both OpenAPI documents, fuzzed with schemathesis against the real processes
(issue 12, "Proof"): whatever a client sends, no answer is a 5xx and no
answer breaks what the document declares for its status.

The checks are those two properties on purpose. `status_code_conformance`
(every status declared) is left out: the contract's errors (400, 401, 403,
404, 413, 429) are the services' to declare and their documents change with
them, while a 5xx or an answer that contradicts its declared schema is a bug
whatever the document says. Requests carry a valid key with both scopes and
the key's tenant in the path, so they reach the handlers instead of stopping
at 403, and half the valid report queries get a real date range; bounded by
`max_examples` (25 per operation and mode: seconds here).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import date, timedelta
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.core.result import Ok
from schemathesis.specs.openapi.checks import response_schema_conformance

TENANT = "fuzz-api"
CHECKS = [not_a_server_error, response_schema_conformance]
LIMITS = settings(
    max_examples=25,
    deadline=None,
    suppress_health_check=list(HealthCheck),
    derandomize=True,  # the same cases at every run: a failure reproduces
)


def _range(start: date, days: int) -> dict[str, str]:
    return {"from": start.isoformat(), "to": (start + timedelta(days)).isoformat()}


# Real date ranges for half the valid cases: documents that type `from` and
# `to` as plain strings would otherwise let almost every case stop at a 400.
DATES = st.one_of(
    st.none(), st.builds(_range, st.dates(date(2025, 1, 1), date(2027, 12, 31)), st.integers(0, 40))
)


@pytest.fixture(scope="session")
async def fuzz_key(new_key: Callable[..., Awaitable[str]]) -> str:
    return await new_key(TENANT)


def _call(case: Any, key: str) -> None:
    if "tenant_id" in (case.path_parameters or {}):
        case.path_parameters["tenant_id"] = TENANT
    case.call_and_validate(headers={"Authorization": f"Bearer {key}"}, checks=CHECKS, timeout=30)


def fuzz(url: str, key: str) -> list[str]:
    """Every operation of the document at `url`, valid and invalid inputs; the failures."""
    schema = schemathesis.openapi.from_url(f"{url}/openapi.json")
    failures: list[str] = []
    for result in schema.get_all_operations():
        assert isinstance(result, Ok), result
        operation = result.ok()
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):

            @LIMITS
            @given(case=operation.as_strategy(generation_mode=mode), dates=DATES)
            def run(case: Any, dates: dict[str, str] | None) -> None:
                valid = case.meta.generation.mode is GenerationMode.POSITIVE
                if dates and valid and "from" in (case.query or {}):
                    case.query.update(dates)  # a valid range, so the queries run too
                _call(case, key)

            try:
                run()
            except Unsatisfiable:  # no invalid input exists (an operation without parameters)
                continue
            except Exception as exc:
                failures.append(f"{operation.label} ({mode.value}): {exc}")
    return failures


def test_collector_never_answers_5xx_nor_off_its_schema(
    services: dict[str, str], fuzz_key: str
) -> None:
    failures = fuzz(services["collector"], fuzz_key)
    assert not failures, "\n\n".join(failures)


def test_report_service_never_answers_5xx_nor_off_its_schema(
    services: dict[str, str], fuzz_key: str
) -> None:
    failures = fuzz(services["report"], fuzz_key)
    assert not failures, "\n\n".join(failures)
