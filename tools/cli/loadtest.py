"""``t5electra loadtest``: its flags beside the run that reads them. The
load tester is ``tools/load/``, a client of the server like any
other; this module only turns the flags into its ``LoadConfig``."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any


def register(commands: argparse._SubParsersAction) -> None:
    from t5electra.tools.load.workload import RPCS

    load = commands.add_parser(
        "loadtest",
        help="load-test a running server and report throughput and latency",
        description="Closed loop (--concurrency workers back to back) or open loop (--rate requests/s "
        "with Poisson arrivals). Latency is per request, send to last byte; errors are counted by status "
        "code; requests started in the warm-up are not reported.",
    )
    load.add_argument("--address", default="localhost:9000")
    load.add_argument(
        "--rpc",
        choices=RPCS,
        default="generate",
        help="model-infer-t5 and model-infer-electra: the Open Inference Protocol's ModelInfer, one text each",
    )
    load.add_argument("--concurrency", type=int, default=4, help="closed-loop workers (4)")
    load.add_argument("--rate", type=float, help="open loop: requests per second")
    load.add_argument("--duration", type=float, default=10.0, help="measured seconds (10)")
    load.add_argument("--requests", type=int, help="measured requests, instead of --duration")
    load.add_argument("--warmup", type=float, default=2.0, help="seconds excluded from figures (2)")
    load.add_argument("--timeout", type=float, default=30.0, help="per-request deadline (30)")
    load.add_argument("--prompts", type=Path, help="file with one prompt per line (default: built-in set)")
    load.add_argument("--max-new-tokens", type=int, help="for generate and generate-stream")
    load.add_argument(
        "--min-new-tokens", type=int, help="generate and generate-stream: force at least this many tokens"
    )
    load.add_argument(
        "--plain",
        action="store_true",
        help="send only the gRPC deadline (--timeout), none of this project's metadata, as grpcurl or "
        "another language's stubs would: the server then knows the deadline from gRPC alone",
    )
    load.add_argument("--logprobs", type=int, metavar="K", help="generate: ask log-probabilities with K alternatives")
    load.add_argument("--suggestions", type=int, metavar="N", help="detect: ask N suggestions per replaced word")
    load.add_argument(
        "--mix",
        action="append",
        type=json.loads,
        metavar="JSON",
        help="generation parameters that requests take in turn, reported apart; repeat it, e.g. "
        '--mix \'{"max_new_tokens": 4, "min_new_tokens": 4}\' --mix \'{"max_new_tokens": 48, "min_new_tokens": 48}\'',
    )
    load.add_argument("--json", type=Path, metavar="PATH", help="write the figures as JSON")
    load.add_argument("--plot", type=Path, metavar="PATH.png", help="latency histogram and throughput chart")
    load.set_defaults(run=_loadtest)


def _loadtest(args: argparse.Namespace) -> int:
    import asyncio

    from t5electra.tools.load.report import write_json
    from t5electra.tools.load.run import run_load
    from t5electra.tools.load.workload import LoadConfig

    prompts: tuple[str, ...] = ()
    if args.prompts:
        prompts = tuple(line.strip() for line in args.prompts.read_text().splitlines() if line.strip())
    params: dict[str, Any] = {"max_new_tokens": args.max_new_tokens} if args.max_new_tokens else {}
    if args.min_new_tokens:
        params["min_new_tokens"] = args.min_new_tokens
    if args.logprobs is not None:
        params.update(logprobs=True, top_logprobs=args.logprobs)
    config = LoadConfig(
        address=args.address,
        rpc=args.rpc,
        concurrency=args.concurrency,
        rate=args.rate,
        duration=None if args.requests else args.duration,
        requests=args.requests,
        warmup=args.warmup,
        timeout=args.timeout,
        prompts=prompts,
        params=params,
        detect_options={"suggestions": args.suggestions} if args.suggestions else {},
        mix=tuple(args.mix or ()),
        plain=args.plain,
    )
    report = asyncio.run(run_load(config, progress=sys.stderr.isatty()))
    print(report.table())
    if args.json:
        write_json(report, args.json)
    if args.plot:
        report.plot(args.plot)
    return 0
