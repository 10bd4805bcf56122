"""Health: each component answers a probe; the service is as healthy as its parts allow."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Mapping

from schema.responses import ComponentHealth, Health

Probe = Callable[[], Awaitable[ComponentHealth]]

# Without these the service cannot take events or answer: their failure means "down".
ESSENTIAL = frozenset({"postgres"})


async def _run(probe: Probe, seconds: float) -> ComponentHealth:
    try:
        async with asyncio.timeout(seconds):
            return await probe()
    except TimeoutError:
        return ComponentHealth(status="down", detail={"error": f"no answer in {seconds} s"})
    except Exception as exc:
        return ComponentHealth(status="down", detail={"error": repr(exc)})


def overall(components: Mapping[str, ComponentHealth]) -> str:
    if any(components[name].status == "down" for name in ESSENTIAL if name in components):
        return "down"
    if any(c.status in ("down", "degraded") for c in components.values()):
        return "degraded"
    return "ok"


async def check(probes: Mapping[str, Probe], seconds: float = 2.0) -> Health:
    names = list(probes)
    results = await asyncio.gather(*(_run(probes[n], seconds) for n in names))
    components = dict(zip(names, results, strict=True))
    return Health(status=overall(components), components=components)  # type: ignore[arg-type]
