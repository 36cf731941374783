"""``t5electra soak``: its flags beside the run that reads them. The soak
itself is ``tools/bench/soak.py``; it is imported when the command runs, so
that ``--help`` stays quick."""

from __future__ import annotations

import argparse
import json
from pathlib import Path


def register(commands: argparse._SubParsersAction) -> None:
    soak_command = commands.add_parser(
        "soak",
        help="mixed traffic with replica kills and overload bursts; accounts for every request",
        description="Starts its own t5electra serve on free local ports and sends Generate, GenerateStream and "
        "DetectReplacements with Poisson arrivals, with overload bursts and model replicas killed (SIGKILL) on a "
        "schedule. Reports requests by status code, replicas replaced, memory of the serving processes at start "
        "and end, and requests lost (sent, never answered by the deadline). Exits 1 if any was lost.",
    )
    soak_command.add_argument("--duration", type=float, default=600.0, help="seconds of traffic (600)")
    soak_command.add_argument("--rate", type=float, default=8.0, help="requests per second outside bursts (8)")
    soak_command.add_argument("--burst-every", type=float, default=90.0, help="seconds between bursts (90)")
    soak_command.add_argument("--burst-factor", type=float, default=4.0, help="rate multiplier in a burst (4)")
    soak_command.add_argument("--kill-every", type=float, default=120.0, help="seconds between replica kills (120)")
    soak_command.add_argument(
        "--rollout-every",
        type=float,
        default=0.0,
        metavar="SECONDS",
        help="redeploy a changed configuration (T5's batch size) this often, as `serve --address` does (0: never)",
    )
    soak_command.add_argument("--timeout", type=float, default=30.0, help="per-request deadline (30)")
    soak_command.add_argument("--json", type=Path, metavar="PATH", help="write the account as JSON")
    soak_command.add_argument("--workdir", type=Path, help="keep the server log here")
    soak_command.set_defaults(run=_soak)


def _soak(args: argparse.Namespace) -> int:
    import tempfile

    from t5electra.tools.bench import soak

    config = soak.SoakConfig(
        duration=args.duration,
        rate=args.rate,
        burst_every=args.burst_every,
        burst_factor=args.burst_factor,
        kill_every=args.kill_every,
        rollout_every=args.rollout_every,
        timeout=args.timeout,
    )
    with tempfile.TemporaryDirectory(prefix="t5electra-soak-") as scratch:
        report = soak.run(config, args.workdir or Path(scratch), say=lambda line: print(line, flush=True))
    print(soak.table(report))
    if args.json:
        args.json.write_text(json.dumps(report, indent=2) + "\n")
    return 1 if report["lost"] else 0
