import random
from datetime import UTC, datetime

from shared.events import validate
from telemetry.simulate import ticket_life, traffic


def test_every_simulated_event_is_valid_and_in_the_past() -> None:
    rng = random.Random(1)
    now = datetime.now(UTC)
    for n in range(300):
        events = ticket_life(rng, "sim-1", n, now)
        assert events[0]["type"] == "ticket_created"
        for e in events:
            assert validate(e, now)["occurred_at"] == e["occurred_at"]
            assert e["occurred_at"] <= now.isoformat().replace("+00:00", "Z")


def test_traffic_mixes_tenants_and_repeats_some_events() -> None:
    stream = traffic(random.Random(2), ["a", "b"])
    events = [next(stream) for _ in range(3000)]
    assert {e["tenant_id"] for e in events} == {"a", "b"}
    ids = [e["event_id"] for e in events]
    assert 0 < len(ids) - len(set(ids)) < 0.05 * len(ids)
    assert {e["type"] for e in events} >= {"ticket_created", "ticket_transferred", "ticket_closed"}
