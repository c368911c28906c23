"""Both OpenAPI documents say what the services do: real errors, no 422, Bearer
auth, tags and operation ids, the event schema, enums; and CORS answers only
the configured origins (middleware: no lifespan needed)."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from services.collector.app import create_app as collector_app
from services.collector.models import EVENTS
from services.report.app import create_app as report_app
from shared.settings import Settings


def apps(**settings: str) -> list[FastAPI]:
    s = Settings(database_url="postgresql://u@localhost/db", **settings)  # type: ignore[arg-type]
    return [report_app(s), collector_app(s)]


def operations(schema: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    return [(path, op) for path, ops in schema["paths"].items() for op in ops.values()]


@pytest.mark.parametrize("app", apps(), ids=["report", "collector"])
def test_every_operation_is_documented_as_it_behaves(app: FastAPI) -> None:
    schema = app.openapi()
    ids = [op["operationId"] for _, op in operations(schema)]
    assert len(ids) == len(set(ids)) and all("_" not in i for i in ids), ids
    assert schema["components"]["securitySchemes"]["bearer"]["scheme"] == "bearer"
    assert schema["security"] == [{"bearer": []}]
    assert "HTTPValidationError" not in schema["components"]["schemas"]
    for path, op in operations(schema):
        assert op["tags"], path
        assert "422" not in op["responses"], path
        assert "503" in op["responses"] or path == "/healthz", path
        if path in ("/healthz", "/readyz"):
            assert op["security"] == []
            continue
        assert "security" not in op  # the document's Bearer scheme applies
        assert "401" in op["responses"], path
        assert "403" in op["responses"] or not path.startswith("/v1/tenants/"), path
        error = op["responses"]["401"]["content"]["application/json"]["schema"]
        assert error == {"$ref": "#/components/schemas/ErrorBody"}
        ok = op["responses"].get("200") or op["responses"]["202"]
        assert ok["content"]["application/json"]["schema"]["$ref"], path


def test_report_parameters_have_the_contract_enums() -> None:
    schema = apps()[0].openapi()
    params = {
        p["name"]: p["schema"]
        for p in schema["paths"]["/v1/tenants/{tenant_id}/reports/timeseries"]["get"]["parameters"]
    }
    granularity = schema["components"]["schemas"]["Granularity"]
    assert granularity["enum"] == ["15m", "30m", "hour", "day", "week", "month"]
    assert params["granularity"] == {"$ref": "#/components/schemas/Granularity"}
    channel = params["channel"]["anyOf"][0]
    assert sorted(channel["enum"]) == ["email", "other", "webchat", "whatsapp"]
    groups = schema["paths"]["/v1/tenants/{tenant_id}/reports/groups"]["get"]
    sort = next(p for p in groups["parameters"] if p["name"] == "sort")
    assert "-stints" in sort["schema"]["enum"]
    csv = groups["responses"]["200"]["content"]["text/csv"]
    assert csv["schema"]["type"] == "string"


def test_post_events_documents_the_event_schema() -> None:
    schema = apps()[1].openapi()
    body = schema["paths"]["/v1/events"]["post"]["requestBody"]
    assert body["content"]["application/json"]["schema"]["$ref"].endswith("/EventBatch")
    batch = schema["components"]["schemas"]["EventBatch"]
    assert (batch["minItems"], batch["maxItems"]) == (1, 500)
    assert batch["items"]["discriminator"]["propertyName"] == "type"
    created = schema["components"]["schemas"]["TicketCreated"]
    assert set(created["required"]) >= {"event_id", "tenant_id", "ticket_id", "type", "channel"}
    assert created["additionalProperties"] is False
    # The documented schema agrees with the validator on a real event.
    event = {
        "event_id": "e1", "tenant_id": "acme", "ticket_id": "T", "type": "ticket_created",
        "occurred_at": "2026-11-27T03:15:41.123Z", "channel": "email", "group_id": "g",
    }  # fmt: skip
    assert EVENTS.validate_python([event])[0].type == "ticket_created"


async def test_cors_answers_only_the_configured_origins() -> None:
    allowed = "https://dash.example"
    for app, origin_ok in ((apps()[0], False), (apps(cors_origins=allowed)[0], True)):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
            resp = await client.options(
                "/v1/tenants/acme/reports/summary",
                headers={"Origin": allowed, "Access-Control-Request-Method": "GET",
                         "Access-Control-Request-Headers": "authorization"},
            )  # fmt: skip
        if origin_ok:
            assert resp.status_code == 200
            assert resp.headers["access-control-allow-origin"] == allowed
            assert "authorization" in resp.headers["access-control-allow-headers"].lower()
        else:
            assert "access-control-allow-origin" not in resp.headers
