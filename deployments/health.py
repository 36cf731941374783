"""Whether the application can answer, from Serve's own status API.

Asking the controller is the only view that covers every replica of every
deployment (a handle call would only reach one, and would queue behind real
traffic under load). The answer is cached because probes can be frequent and
the controller is shared, and a stale answer is refreshed in the background:
a request never waits for the controller once a first answer exists (a
blocking refresh once a second put 5 ms on every Generate at concurrency 1,
whose requests are more than a second apart).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass

from ray import serve
from ray.serve.schema import ApplicationStatus

logger = logging.getLogger("ray.serve")

PROBE_MAX_AGE_S = 1.0
"""How old an answer a health or readiness probe may get."""
REQUEST_MAX_AGE_S = 5.0
"""How old an answer a request's fail-fast check may get. Reading Serve's
status is dear for the ingress (its pydantic models and the pickled
request-router class of every deployment): under steady load with no
probes, one read a second was 7.3% of the ingress's CPU samples
(tools/bench/serving_cost.py --profile)."""
LIVENESS = "liveness"
"""Health service name that is SERVING whenever a request reaches an
ingress, models or not: what a liveness probe should ask, since restarting a
Ray node does not bring a model that cannot load any closer."""
_NOT_SERVING = {ApplicationStatus.DELETING}
_REBUILDING = {ApplicationStatus.NOT_STARTED, ApplicationStatus.DEPLOYING}


@dataclass(frozen=True)
class Snapshot:
    app_running: bool
    replicas: dict[str, int]
    services: dict[str, str]

    def serving(self, service: str | None = None) -> bool:
        """True when the app is not draining and the models behind ``service``
        (every model when None) have at least one running replica."""
        if not self.app_running:
            return False
        needed = self.services.values() if service is None else [self.services[service]]
        return all(self.replicas.get(deployment, 0) > 0 for deployment in needed)


class Readiness:
    def __init__(self, app_name: str, services: dict[str, str], read: Callable[[], Snapshot] | None = None) -> None:
        """``read``: where a snapshot comes from (Serve's status API unless
        given; tests give a fixed one)."""
        self._app = app_name
        self._services = services
        self._read_snapshot = read or self._read
        self._cached: tuple[float, Snapshot] | None = None
        self._lock = asyncio.Lock()
        self._refreshing: asyncio.Task[None] | None = None
        self._last_replicas: dict[str, int] = {}

    async def snapshot(self, max_age_s: float = PROBE_MAX_AGE_S) -> Snapshot:
        """The latest answer, at most about ``max_age_s`` old plus one
        controller round trip; only the very first call waits for it."""
        if self._cached is None:
            async with self._lock:
                if self._cached is None:
                    self._cached = (time.monotonic(), await asyncio.to_thread(self._read_snapshot))
        elif time.monotonic() - self._cached[0] > max_age_s and self._refreshing is None:
            self._refreshing = asyncio.get_running_loop().create_task(self._refresh())
        return self._cached[1]

    def replicas(self, deployment: str) -> int:
        """Running replicas of ``deployment`` by the latest answer (0 before
        the first); never waits."""
        return 0 if self._cached is None else self._cached[1].replicas.get(deployment, 0)

    async def _refresh(self) -> None:
        try:
            self._cached = (time.monotonic(), await asyncio.to_thread(self._read_snapshot))
        except Exception:  # keep the last answer; the next call tries again
            logger.warning("could not read Serve's status; health answers from the last reading", exc_info=True)
        finally:
            self._refreshing = None

    def _read(self) -> Snapshot:
        app = serve.status().applications.get(self._app)
        if app is None:
            self._last_replicas = {}
            return Snapshot(False, {}, self._services)
        # A deployment the application lists no longer while the controller
        # rebuilds it from a new config (`serve deploy`) keeps its last
        # count: its old replicas serve until their successors run. Once the
        # application settles, the listing is the truth again.
        current = {name: d.replica_states.get("RUNNING", 0) for name, d in app.deployments.items()}
        rebuilding = app.status in _REBUILDING
        self._last_replicas = {**self._last_replicas, **current} if rebuilding else current
        # Replica counts decide, whatever the application's status (NOT_STARTED
        # and DEPLOYING during a redeploy, UNHEALTHY while one model fails):
        # only DELETING means draining.
        running = app.status not in _NOT_SERVING
        return Snapshot(running, dict(self._last_replicas), self._services)
