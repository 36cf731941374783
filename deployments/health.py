"""Whether the application can answer, from Serve's own status API.

Asking the controller is the only view that covers every replica of every
deployment (a handle call would only reach one, and would queue behind real
traffic under load). The answer is cached briefly because probes can be
frequent and the controller is shared.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass

from ray import serve
from ray.serve.schema import ApplicationStatus

CACHE_SECONDS = 1.0
LIVENESS = "liveness"
"""Health service name that is SERVING whenever a request reaches an
ingress, models or not: what a liveness probe should ask, since restarting a
Ray node does not bring a model that cannot load any closer."""
_NOT_SERVING = {ApplicationStatus.DELETING, ApplicationStatus.NOT_STARTED}


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
    def __init__(self, app_name: str, services: dict[str, str]) -> None:
        self._app = app_name
        self._services = services
        self._cached: tuple[float, Snapshot] | None = None
        self._lock = asyncio.Lock()

    async def snapshot(self) -> Snapshot:
        async with self._lock:
            now = time.monotonic()
            if self._cached is None or now - self._cached[0] > CACHE_SECONDS:
                self._cached = (now, await asyncio.to_thread(self._read))
            return self._cached[1]

    def _read(self) -> Snapshot:
        app = serve.status().applications.get(self._app)
        if app is None:
            return Snapshot(False, {}, self._services)
        replicas = {name: d.replica_states.get("RUNNING", 0) for name, d in app.deployments.items()}
        # DEPLOYING, UNHEALTHY and DEPLOY_FAILED can still serve from the
        # replicas that run (a rollout, a replica being replaced, one model
        # failing while the other runs); DELETING means draining.
        running = app.status not in _NOT_SERVING
        return Snapshot(running, replicas, self._services)
