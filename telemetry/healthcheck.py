"""The image's HEALTHCHECK: healthy when this container's service answers.

One image runs every stage, so it tries what any of them serves: `/healthz` of
the collector and the report service, `/metrics` of a worker or the dumper
(TELEMETRY_METRICS_PORT, set in the image). Exit 0 when one answers 200.
"""

from __future__ import annotations

import sys
import urllib.request

from shared.settings import Settings


def urls(settings: Settings) -> list[str]:
    found = [
        f"http://127.0.0.1:{settings.collector_port}/healthz",
        f"http://127.0.0.1:{settings.report_port}/healthz",
    ]
    if settings.metrics_port:
        found.append(f"http://127.0.0.1:{settings.metrics_port}/metrics")
    return found


def healthy(settings: Settings, timeout_s: float = 2.0) -> bool:
    for url in urls(settings):
        try:
            with urllib.request.urlopen(url, timeout=timeout_s) as resp:
                if resp.status == 200:
                    return True
        except OSError:
            continue
    return False


if __name__ == "__main__":
    sys.exit(0 if healthy(Settings()) else 1)
