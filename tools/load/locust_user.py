"""A Locust user for teams that already load-test with Locust.

    locust -f tools/load/locust_user.py --host localhost:9000

(or ``-f $(python -c "import t5electra.tools.load.locust_user as m; print(m.__file__)")``
from an installed package). Each simulated user calls Generate, GenerateStream
and DetectReplacements through :class:`~t5electra.clients.Client`, and every
call is reported to Locust with its latency, response size and, for failures,
the gRPC status code. Subclass it to change the prompts, the task weights or
the request options (log-probabilities, suggestions, offset units).
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from typing import Any

import grpc.experimental.gevent as grpc_gevent
from locust import User, between, task

# Absolute imports: Locust loads this file by path, outside its package.
from t5electra.clients.client import Client
from t5electra.clients.options import NO_RETRY
from t5electra.clients.results import T5ElectraError
from t5electra.tools.load.workload import DETECTION_TEXTS, GENERATION_PROMPTS

# Locust runs users as gevent greenlets; gRPC must cooperate with gevent's loop.
grpc_gevent.init_gevent()


class T5ElectraUser(User):
    """Locust's ``host`` is the server's host:port."""

    wait_time = between(0.1, 0.5)
    prompts = GENERATION_PROMPTS
    texts = DETECTION_TEXTS
    # Extra request options, e.g. {"logprobs": True, "top_logprobs": 3} and
    # {"suggestions": 3, "offset_unit": "utf16_code_unit"}; subclass to set them.
    generation_options: dict[str, Any] = {}  # noqa: RUF012 - read-only class-level defaults
    detection_options: dict[str, Any] = {}  # noqa: RUF012
    abstract = False

    def on_start(self) -> None:
        # Locust counts failures itself; retries would hide them.
        self.client = Client(self.host or "localhost:9000", retry=NO_RETRY)

    def on_stop(self) -> None:
        self.client.close()

    def _report(self, name: str, call: Callable[[], Any], size: Callable[[Any], int]) -> None:
        started = time.perf_counter()
        error: Exception | None = None
        length = 0
        try:
            length = size(call())
        except T5ElectraError as failure:
            error = failure
        self.environment.events.request.fire(
            request_type="grpc",
            name=name,
            response_time=(time.perf_counter() - started) * 1000,
            response_length=length,
            exception=error,
        )

    @task(3)
    def generate(self) -> None:
        prompt = random.choice(self.prompts)
        self._report("Generate", lambda: self.client.generate(prompt, **self.generation_options), lambda g: len(g.text))

    @task(1)
    def generate_stream(self) -> None:
        prompt = random.choice(self.prompts)
        self._report(
            "GenerateStream",
            lambda: "".join(self.client.generate_stream(prompt, **self.generation_options)),
            lambda text: len(text),
        )

    @task(2)
    def detect_replacements(self) -> None:
        text = random.choice(self.texts)
        self._report(
            "DetectReplacements",
            lambda: self.client.detect_replacements(text, **self.detection_options),
            lambda d: len(d.tokens),
        )
