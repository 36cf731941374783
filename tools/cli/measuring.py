"""Measuring and building: ``loadtest``, ``bench``, ``soak`` and
``make-checkpoints``. Each imports its machinery when it runs."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from t5electra.server.embedded import CHECKPOINTS

# The shipped ELECTRA checkpoints' training cycles (their training.json files).
ELECTRA_STEPS = (6000, 16000)
GENERATOR_STEPS = (16000,)


def register(commands: argparse._SubParsersAction) -> None:
    from t5electra.clients.loadtest import RPCS

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

    bench = commands.add_parser(
        "bench",
        help="measure the engine's limit, the served system and a plain gRPC server side by side",
        description="Starts its own servers on free local ports, one after another: t5electra serve and a "
        "plain one-process grpcio server (no batching), loads each with the load tester at every concurrency, "
        "then runs the engines in-process at batch size 1 and at the batch sizes the server formed. Sizes: "
        "tiny (embedded checkpoints) and small (t5-small and electra-small-discriminator architectures; "
        "random weights unless --t5-model/--electra-model give real ones), then the peers phase: the served "
        "system at each precision beside CTranslate2 int8 and ONNX Runtime int8 in-process on one workload. About 25 "
        "minutes on 2 cores; --quick: about 2 minutes.",
    )
    bench.add_argument("--quick", action="store_true", help="tiny models, concurrency 1 and 16, short windows")
    bench.add_argument("--sizes", help="comma-separated: tiny,small (default both; --quick: tiny)")
    bench.add_argument("--concurrency", help="comma-separated closed-loop concurrencies (default 1,4,16,64)")
    bench.add_argument("--rpcs", help="comma-separated: generate,generate-stream,detect (default all)")
    bench.add_argument("--duration", type=float, help="measured seconds per load point (default 8; --quick 4)")
    bench.add_argument("--max-new-tokens", type=int, default=32, help="for generation requests (32)")
    bench.add_argument(
        "--torch-threads", type=int, default=1, help="intra-op threads of replicas, plain server and engine (1)"
    )
    bench.add_argument(
        "--no-mixed", action="store_true", help="skip the mixed-length phase (continuous vs static T5 scheduler)"
    )
    bench.add_argument(
        "--no-peers",
        action="store_true",
        help="skip the peers phase (served at each precision beside CTranslate2 and ONNX Runtime int8; "
        "needs pip install '.[peers]'; --quick skips it unless --peers)",
    )
    bench.add_argument("--peers", action="store_true", help="run the peers phase even with --quick")
    bench.add_argument(
        "--dtype",
        default="auto",
        choices=["auto", "float32", "bfloat16", "float16", "int8"],
        help="precision of both models in the served, plain and engine phases (auto: float32)",
    )
    bench.add_argument(
        "--precisions", help="comma-separated precisions of the peers phase (default float32,bfloat16,int8)"
    )
    bench.add_argument("--t5-model", help="real weights for the small size: hub id or path (e.g. t5-small)")
    bench.add_argument("--electra-model", help="real weights for the small size: hub id or path")
    bench.add_argument("--json", type=Path, metavar="PATH", help="write every figure, machine and versions as JSON")
    bench.add_argument("--plot", type=Path, metavar="PATH.png", help="throughput and p99 against concurrency")
    bench.add_argument("--markdown", type=Path, metavar="PATH.md", help="the tables as docs/benchmarks.md shows them")
    bench.add_argument("--workdir", type=Path, help="keep server logs and generated models here")
    bench.set_defaults(run=_bench)

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

    make = commands.add_parser(
        "make-checkpoints",
        help="retrain the embedded tiny checkpoints",
        description="Trains tiny-t5, tiny-electra and tiny-electra-generator (suggestions; it shares "
        "tiny-electra's vocabulary and is retrained with it) from scratch on this machine's CPU, deterministic "
        "for a seed. The ELECTRA pair learns general English from Debian packages, fetched with `apt-get "
        "download` into $T5ELECTRA_CORPUS_CACHE (default ~/.cache/t5electra/english), mixed with the standard "
        "library's docstrings. With one thread, tiny-t5 takes about 25 minutes, tiny-electra about 90 (its two "
        "cycles) and the generator about 55 (measured while other work shared the two cores), plus a minute to "
        "fetch and extract the corpus the first time. The ELECTRA runs save their training state every --save-every "
        "steps under --state-dir; with --resume an interrupted run continues where its state left off and "
        "trains exactly as an uninterrupted one.",
    )
    make.add_argument("--out", type=Path, default=Path(str(CHECKPOINTS)), help="where to write (default: package)")
    make.add_argument("--only", choices=["t5", "electra", "generator"], help="train one of them")
    make.add_argument("--seed", type=int, default=0)
    make.add_argument("--t5-steps", type=int, default=8000)
    cycles_help = (
        "training cycles' lengths in steps, comma-separated; each warms up and decays its learning rate "
        "anew, and a state that finished the first cycles is continued with --resume (default: {})"
    )
    make.add_argument(
        "--electra-steps",
        type=_cycles,
        default=ELECTRA_STEPS,
        help=cycles_help.format(",".join(map(str, ELECTRA_STEPS))),
    )
    make.add_argument(
        "--generator-steps",
        type=_cycles,
        default=GENERATOR_STEPS,
        help=cycles_help.format(",".join(map(str, GENERATOR_STEPS))),
    )
    make.add_argument("--threads", type=int, default=1, help="torch threads (1, as the shipped checkpoints)")
    make.add_argument(
        "--state-dir",
        type=Path,
        default=Path.home() / ".cache" / "t5electra" / "training-state",
        help="where the ELECTRA runs keep their training state (default ~/.cache/t5electra/training-state)",
    )
    make.add_argument(
        "--resume", action="store_true", help="continue from the saved training state instead of starting over"
    )
    make.add_argument("--save-every", type=int, default=500, help="steps between saved training states (500)")
    make.set_defaults(run=_make_checkpoints)


def _cycles(text: str) -> tuple[int, ...]:
    try:
        cycles = tuple(int(part) for part in text.split(","))
    except ValueError:
        cycles = ()
    if not cycles or min(cycles) < 1:
        raise argparse.ArgumentTypeError(f"expected step counts like 6000,16000, not {text!r}")
    return cycles


def _loadtest(args: argparse.Namespace) -> int:
    import asyncio

    from t5electra.clients.load_report import write_json
    from t5electra.clients.loadtest import LoadConfig, run_load

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


def _bench(args: argparse.Namespace) -> int:
    import tempfile

    from t5electra.tools.bench import report, runner

    chosen: dict[str, Any] = {
        "t5_model": args.t5_model,
        "electra_model": args.electra_model,
        "max_new_tokens": args.max_new_tokens,
        "torch_threads": args.torch_threads,
        "mixed": not args.no_mixed,
        "dtype": args.dtype,
    }
    if args.no_peers or args.peers:
        chosen["peers"] = args.peers and not args.no_peers
    if args.precisions:
        chosen["precisions"] = tuple(args.precisions.split(","))
    if args.sizes:
        chosen["sizes"] = tuple(args.sizes.split(","))
    if args.concurrency:
        chosen["concurrencies"] = tuple(int(c) for c in args.concurrency.split(","))
    if args.rpcs:
        chosen["rpcs"] = tuple(args.rpcs.split(","))
    if args.duration:
        chosen["duration"] = args.duration
    config = runner.BenchConfig.quick(**chosen) if args.quick else runner.BenchConfig(**chosen)
    with tempfile.TemporaryDirectory(prefix="t5electra-bench-") as scratch:
        figures = runner.run(config, args.workdir or Path(scratch), say=lambda line: print(line, flush=True))
    print()
    print(report.table(figures))
    if args.json:
        args.json.write_text(json.dumps(figures, indent=2) + "\n")
    if args.plot:
        report.plot(figures, args.plot)
    if args.markdown:
        args.markdown.write_text(report.markdown(figures, "t5electra " + " ".join(args.argv)))
    return 0


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


def _make_checkpoints(args: argparse.Namespace) -> int:
    import shutil

    import torch

    from t5electra.tools.training import electra, generator, t5

    torch.set_num_threads(args.threads)
    out: Path = args.out
    state = {"state_dir": args.state_dir, "save_every": args.save_every}
    # The generator shares tiny-electra's vocabulary, so it is retrained with it.
    runs = {"electra": args.only in (None, "electra"), "generator": args.only in (None, "electra", "generator")}
    if not args.resume:
        for name in (name for name, runs_now in runs.items() if runs_now):
            shutil.rmtree(args.state_dir / name, ignore_errors=True)
    if args.only in (None, "t5"):
        t5.train(out / "tiny-t5", seed=args.seed, steps=args.t5_steps)
    if runs["electra"]:
        electra.train(out / "tiny-electra", seed=args.seed, cycles=args.electra_steps, **state)
    if runs["generator"]:
        generator.train(
            out / "tiny-electra-generator",
            out / "tiny-electra",
            seed=args.seed,
            cycles=args.generator_steps,
            **state,
        )
    return 0
