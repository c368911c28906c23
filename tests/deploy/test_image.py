"""The Dockerfile: cached dependency layer from the hashed lock CI uses, a
pinned base, a health check; and the locks themselves."""

from __future__ import annotations

import re

from tests.deploy.conftest import ROOT

DOCKERFILE = (ROOT / "Dockerfile").read_text()


def instructions() -> list[str]:
    joined = re.sub(r"\\\n\s*", " ", DOCKERFILE)
    return [line for line in joined.splitlines() if line and not line.startswith("#")]


def test_base_image_is_pinned_by_digest() -> None:
    assert re.match(r"FROM python:3\.11-slim@sha256:[0-9a-f]{64} AS app$", instructions()[0])
    assert [line for line in instructions() if line.startswith("FROM")][1:] == [
        "FROM app AS emulator",  # compose's emulator: the app plus moto
        "FROM app",  # the default target, what deployments run
    ]


def test_dependencies_come_from_the_lock_before_the_code() -> None:
    lines = instructions()
    lock = next(i for i, line in enumerate(lines) if "--require-hashes" in line)
    first_code = next(i for i, line in enumerate(lines) if line.startswith("COPY shared"))
    assert "-r requirements.lock" in lines[lock] and lock < first_code
    assert lines[lock - 1] == "COPY requirements.lock ./"


def test_health_check_and_no_root() -> None:
    lines = instructions()
    assert any(line.startswith("HEALTHCHECK") and "telemetry.healthcheck" in line for line in lines)
    assert any(line.startswith("USER 65534") for line in lines)


def pins(path: str) -> dict[str, str]:
    text = (ROOT / path).read_text()
    return dict(re.findall(r"^([A-Za-z0-9_.\-\[\]]+)==([^\s;]+)", text, re.M))


def test_locks_have_hashes_and_agree() -> None:
    """The image's lock is the CI lock's runtime part, at the same versions."""
    image, ci = pins("requirements.lock"), pins("requirements-dev.lock")
    assert image and all(ci.get(name) == version for name, version in image.items())
    emulator = pins("requirements-emulator.lock")
    assert "moto" in emulator and all(ci.get(n) == v for n, v in emulator.items())
    for path in ("requirements.lock", "requirements-dev.lock", "requirements-emulator.lock",
                 "deploy/tools.lock"):  # fmt: skip
        text = (ROOT / path).read_text()
        assert text.count("==") <= text.count("--hash=sha256:"), path
