"""The declared pipeline against what the code does: settings, handlers, the
command line, the README. Deployment files are checked in tests/deploy."""

from __future__ import annotations

import ast
import asyncio
import re
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest

from services.consolidator import handler as consolidator
from services.enricher import handler as enricher
from services.filter import handler as filter_stage
from services.loader import realtime, reports
from shared import pipeline
from shared.layout import CONSOLIDATED, ENRICHED, FILTERED, RAW, BadKeyError, stage_key
from shared.pipeline import QUEUES, SERVICES, STAGES, Kind, Queue, Resource
from shared.service import checked
from shared.settings import Settings

ROOT = Path(__file__).resolve().parents[2]

HANDLERS: dict[Queue, Callable[[Any, str], Awaitable[None]]] = {
    pipeline.FILTER_QUEUE: filter_stage.handle,
    pipeline.CONSOLIDATOR_QUEUE: consolidator.handle,
    pipeline.ENRICHER_QUEUE: enricher.handle,
    pipeline.REALTIME_QUEUE: realtime.handle,
    pipeline.REPORTS_QUEUE: reports.handle,
}
PREFIXES = (RAW, FILTERED, CONSOLIDATED, ENRICHED)


def test_every_name_a_stage_uses_is_a_setting() -> None:
    fields = Settings.model_fields
    for q in QUEUES:
        assert q.setting in fields
        assert str(fields[q.setting].default).startswith("telemetry-")
    for r in Resource:
        assert r.value in fields
    for s in STAGES:
        assert (s.port_setting is not None) == (s.kind is Kind.HTTP), s.name
        if s.port_setting:
            assert s.port_setting in fields


def test_stages_are_unique_and_only_queue_workers_have_queues() -> None:
    assert len(set(SERVICES)) == len(SERVICES)
    assert len(set(QUEUES)) == len(QUEUES)
    for s in STAGES:
        assert bool(s.queues) == (s.kind is Kind.QUEUE), s.name
        if s.kind is Kind.STREAM:
            assert s.scaling.min == s.scaling.max == 1, "a stream reader is single"


def test_every_queue_has_a_handler_that_refuses_other_stages_keys() -> None:
    """Each handler's own key check agrees with its queue's declared prefix."""
    assert set(HANDLERS) == set(QUEUES)

    async def refuses(handle: Callable[[Any, str], Awaitable[None]], key: str) -> bool:
        try:
            await handle(None, key)  # deps are never reached: the key is checked first
        except BadKeyError:
            return True
        return False

    for queue, handle in HANDLERS.items():
        for prefix in PREFIXES:
            if prefix != queue.prefix:
                key = stage_key(prefix, "acme", "0000000000000-b")
                assert asyncio.run(refuses(handle, key)), (queue, prefix)


async def test_the_worker_refuses_keys_outside_the_declared_prefix() -> None:
    seen: list[str] = []

    async def handle(key: str) -> None:
        seen.append(key)

    wrapped = checked(pipeline.FILTER_QUEUE, handle)
    await wrapped(stage_key(RAW, "acme", "0000000000000-b"))
    with pytest.raises(BadKeyError):
        await wrapped(stage_key(FILTERED, "acme", "0000000000000-b"))
    assert len(seen) == 1


def test_the_command_line_runs_every_stage() -> None:
    from telemetry.cli import _parser

    commands = _parser()._subparsers._group_actions[0].choices  # type: ignore[union-attr]
    assert set(SERVICES) <= set(commands)


def test_up_does_not_import_the_command_line() -> None:
    """`telemetry up` runs the stages the pipeline declares; the command line
    dispatches to it, so an import back would be a cycle."""
    tree = ast.parse((ROOT / "telemetry" / "up.py").read_text())
    imported = {n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)}
    imported |= {a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
    assert "telemetry.cli" not in imported


def readme() -> str:
    return (ROOT / "README.md").read_text()


def test_readme_has_the_table_of_stages() -> None:
    assert pipeline.markdown_table() in readme(), "README's stage table: paste markdown_table()"


def test_readme_documents_every_setting() -> None:
    rows = [line for line in readme().splitlines() if line.startswith("| `")]
    documented = {name for row in rows for name in re.findall(r"`([A-Z][A-Z0-9_]+)`", row)}
    for name, field in Settings.model_fields.items():
        alias = field.validation_alias
        env = alias.choices[0] if alias is not None else f"TELEMETRY_{name.upper()}"  # type: ignore[union-attr]
        assert env in documented, f"{env} is missing from the README's settings table"
