"""The ``t5electra`` command: one subcommand per job."""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any, TextIO

from .settings import CHECKPOINTS, Settings

log = logging.getLogger("t5electra")


def _join_cluster_auth() -> None:
    """Before Ray is imported: present the cluster's token if one is at hand."""
    from t5electra.deployments.ray_auth import present_cluster_token

    present_cluster_token()


def _serve(args: argparse.Namespace) -> int:
    from t5electra.deployments import lifecycle

    overrides: dict[str, Any] = {"port": args.port}
    if args.t5_model:
        overrides["t5"] = {"model": args.t5_model}
    electra = {"model": args.electra_model, "generator_model": args.electra_generator}
    if any(electra.values()):
        overrides["electra"] = {k: v for k, v in electra.items() if v}
    settings = Settings.load(args.config, **overrides)
    if not args.address and not lifecycle.is_server_child():
        return lifecycle.supervise(sys.argv[1:], settings, _say)

    stop = None if args.address else lifecycle.StopRequest()
    if args.address:
        _join_cluster_auth()
    started = time.monotonic()
    cluster = lifecycle.start(settings, args.address)
    if stop is not None:
        stop.install()
    _say(f"t5electra serving on 0.0.0.0:{settings.port} (gRPC, reflection on) after {time.monotonic() - started:.1f}s")
    _say(f"  T5 model:      {settings.t5.model}")
    _say(f"  ELECTRA model: {settings.electra.model}")
    _say(f"  Ray cluster:   {cluster}")
    if stop is None:
        _say(f"  deployed onto the Ray cluster at {args.address}; it keeps running after this command")
        return 0
    _say(f"  metrics:       http://127.0.0.1:{settings.metrics_port}/metrics (Prometheus)")
    _say("Ctrl-C or SIGTERM stops it.")
    stop.wait()
    lifecycle.drain_and_stop(settings.app_name, _say)
    return 0


def _say(line: str) -> None:
    print(line, flush=True)


def _join_cluster(address: str) -> bool:
    """Joins the cluster at ``address``; False (and a message) when none answers."""
    _join_cluster_auth()
    from t5electra.deployments import cluster

    try:
        cluster.connect(address)
    except ConnectionError as error:
        print(f"error: no Ray cluster at {address}: {error}", file=sys.stderr)
        return False
    return True


def _status(args: argparse.Namespace) -> int:
    answer = _answer_only_on_stdout() if args.json else sys.stdout
    if not _join_cluster(args.address):
        return 2
    from t5electra.deployments import cluster

    status = cluster.read_status(args.address)
    print(json.dumps(status.to_json(), indent=2) if args.json else status.table(), file=answer, flush=True)
    return 0


def _answer_only_on_stdout() -> TextIO:
    """The real stdout, for the answer; everything else written to file
    descriptor 1 from now on, such as what Ray's core prints when a node
    dies or at exit, goes to stderr, so ``--json`` stays one JSON document."""
    sys.stdout.flush()
    answer = os.fdopen(os.dup(1), "w")
    os.dup2(2, 1)
    return answer


def _shutdown(args: argparse.Namespace) -> int:
    if not _join_cluster(args.address):
        return 2
    from ray.serve.exceptions import RayServeException

    from t5electra.deployments import cluster

    try:
        removed = cluster.shutdown(None if args.all else args.app)
    except (LookupError, RayServeException) as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    what = "Ray Serve shut down" if args.all else "application deleted"
    print(f"{what}: {', '.join(removed) or 'no applications were running'}")
    return 0


def _generation_params(args: argparse.Namespace) -> dict[str, Any]:
    """The GenerationParameters fields given on the command line."""
    from t5electra.clients.options import GENERATION_FIELDS

    params: dict[str, Any] = {name: getattr(args, name) for name in GENERATION_FIELDS if hasattr(args, name)}
    params["do_sample"] = True if args.do_sample else None
    params["stop_sequences"] = args.stop or None
    if args.show_logprobs is not None:
        params["logprobs"], params["top_logprobs"] = True, args.show_logprobs
    return params


def _generate(args: argparse.Namespace) -> int:
    from t5electra.clients import Client, T5ElectraError

    params = _generation_params(args)
    streamable = (args.num_beams or 1) == 1 and (args.num_return_sequences or 1) == 1
    with Client(args.address, timeout=args.timeout) as client:
        try:
            if args.json:
                print(json.dumps(_generation_json(client.generate(args.text, **params)), indent=2))
            elif streamable and not args.no_stream:
                stream = client.generate_stream(args.text, **params)
                for piece in stream:
                    print(piece, end="", flush=True)
                print()
                if stream.end is not None:
                    print(f"[{stream.end.finish_reason}, {stream.end.generated_tokens} tokens]", file=sys.stderr)
                    _print_logprobs(stream.end.tokens)
            else:
                for sequence in client.generate(args.text, **params).sequences:
                    score = "" if sequence.score is None else f"  [score {sequence.score:.4f}]"
                    print(sequence.text + score)
                    _print_logprobs(sequence.tokens)
        except T5ElectraError as error:
            print(f"error: {error.code.name}: {error.details}", file=sys.stderr)
            return 1
    return 0


def _print_logprobs(tokens: Any) -> None:
    for token in tokens:
        alternatives = "  ".join(f"{a.token} {a.logprob:.3f}" for a in token.top)
        print(f"  {token.logprob:8.4f}  {token.token:<16} {alternatives}")


def _generation_json(generation: Any) -> dict[str, Any]:
    return {
        "sequences": [asdict(s) for s in generation.sequences],
        "input_tokens": generation.input_tokens,
        "output_tokens": generation.output_tokens,
        "model": generation.model,
        "metadata": generation.metadata,
    }


def _detect(args: argparse.Namespace) -> int:
    from t5electra.clients import Client, T5ElectraError

    with Client(args.address, timeout=args.timeout) as client:
        try:
            detection = client.detect_replacements(
                args.text,
                threshold=args.threshold,
                word_scoring=args.word_scoring,
                offset_unit=_OFFSET_UNITS[args.offsets],
                suggestions=args.suggest,
            )
        except T5ElectraError as error:
            print(f"error: {error.code.name}: {error.details}", file=sys.stderr)
            return 1
    if args.json:
        print(
            json.dumps(
                {
                    "tokens": [asdict(t) for t in detection.tokens],
                    "words": [asdict(w) for w in detection.words],
                    "replaced_spans": [asdict(s) for s in detection.replaced_spans],
                    "replaced_fraction": detection.replaced_fraction,
                    "offset_unit": detection.offset_unit,
                    "model": detection.model,
                },
                indent=2,
            )
        )
        return 0
    at = _code_points(args.text, _OFFSET_UNITS[args.offsets])
    spans = [(at[s.start], at[s.end]) for s in detection.replaced_spans]
    print(highlight(args.text, spans, sys.stdout.isatty()))
    print(f"replaced: {detection.replaced_fraction:.1%} of {len(detection.tokens)} tokens", file=sys.stderr)
    if args.scores:
        for token in detection.tokens:
            mark = "*" if token.replaced else " "
            print(f"{mark} {token.score:.3f}  {token.token:<20} [{token.start}:{token.end}]")
    if args.words or args.suggest:
        for word in detection.words:
            mark = "*" if word.replaced else " "
            ideas = ", ".join(f"{x.text} ({x.probability:.3f})" for x in word.suggestions)
            print(f"{mark} {word.score:.3f}  {word.text:<20} [{word.start}:{word.end}]  {ideas}")
    return 0


_OFFSET_UNITS = {"code-point": "code_point", "utf8": "utf8_byte", "utf16": "utf16_code_unit"}


def _code_points(text: str, unit: str) -> dict[int, int]:
    """Offsets in ``unit`` back to code points, for highlighting."""
    from .offsets import converter

    to_unit = converter(text, unit)
    return {to_unit(i): i for i in range(len(text) + 1)}


def _tokenize(args: argparse.Namespace) -> int:
    from t5electra.clients import Client, T5ElectraError

    with Client(args.address, timeout=args.timeout) as client:
        try:
            tokenization = client.tokenize(args.text, model=args.model)
        except T5ElectraError as error:
            print(f"error: {error.code.name}: {error.details}", file=sys.stderr)
            return 1
    if args.json:
        print(json.dumps(asdict(tokenization), indent=2))
        return 0
    for token in tokenization.tokens:
        where = "(added)" if token.special else f"[{token.start}:{token.end}]"
        print(f"{token.id:>8}  {token.token:<20} {where}")
    print(f"{tokenization.count} tokens of {tokenization.model}; at most {tokenization.max_tokens} accepted")
    return 0


def _models(args: argparse.Namespace) -> int:
    from t5electra.clients import Client, T5ElectraError

    with Client(args.address, timeout=args.timeout) as client:
        try:
            models = client.model_info()
        except T5ElectraError as error:
            print(f"error: {error.code.name}: {error.details}", file=sys.stderr)
            return 1
    if args.json:
        print(json.dumps([asdict(m) for m in models], indent=2))
        return 0
    for m in models:
        print(f"{m.kind}: {m.name} ({m.architecture}, {m.parameters:,} parameters, {m.dtype} on {m.device})")
        print(f"  at most {m.max_input_tokens} input tokens, {m.max_input_chars} characters")
        if m.suggestion_generator:
            print(f"  suggestions from {m.suggestion_generator}")
        for field, accepted in m.parameters_accepted.items():
            print(f"  {field:<22} {accepted}")
    return 0


def highlight(text: str, spans: list[tuple[int, int]], color: bool) -> str:
    """The text with replaced spans in bold red on a terminal, else in [[ ]]."""
    opening, closing = ("\033[1;31m", "\033[0m") if color else ("[[", "]]")
    out, cursor = [], 0
    for start, end in spans:
        out += [text[cursor:start], opening, text[start:end], closing]
        cursor = end
    out.append(text[cursor:])
    return "".join(out)


def _loadtest(args: argparse.Namespace) -> int:
    import asyncio

    from t5electra.clients.loadtest import LoadConfig, run_load, write_json

    prompts: tuple[str, ...] = ()
    if args.prompts:
        prompts = tuple(line.strip() for line in args.prompts.read_text().splitlines() if line.strip())
    params: dict[str, Any] = {"max_new_tokens": args.max_new_tokens} if args.max_new_tokens else {}
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
    )
    report = asyncio.run(run_load(config, progress=sys.stderr.isatty()))
    print(report.table())
    if args.json:
        write_json(report, args.json)
    if args.plot:
        report.plot(args.plot)
    return 0


def _bench(args: argparse.Namespace) -> int:
    import json
    import tempfile

    from .bench import report, runner

    chosen: dict[str, Any] = {
        "t5_model": args.t5_model,
        "electra_model": args.electra_model,
        "max_new_tokens": args.max_new_tokens,
        "torch_threads": args.torch_threads,
        "mixed": not args.no_mixed,
    }
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
        args.markdown.write_text(report.markdown(figures, "t5electra " + " ".join(sys.argv[1:])))
    return 0


def _soak(args: argparse.Namespace) -> int:
    import json
    import tempfile

    from .bench import soak

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
    import torch

    from .training import electra, generator, t5

    torch.set_num_threads(args.threads)
    out: Path = args.out
    if args.only in (None, "t5"):
        t5.train(out / "tiny-t5", seed=args.seed, steps=args.t5_steps)
    if args.only in (None, "electra"):
        electra.train(out / "tiny-electra", seed=args.seed, steps=args.electra_steps)
    if args.only in (None, "electra", "generator"):
        generator.train(
            out / "tiny-electra-generator", out / "tiny-electra", seed=args.seed, steps=args.generator_steps
        )
    return 0


def parser() -> argparse.ArgumentParser:
    root = argparse.ArgumentParser(
        prog="t5electra", description="gRPC model server for T5 generation and ELECTRA replaced-token detection"
    )
    commands = root.add_subparsers(dest="command", required=True)

    serve = commands.add_parser(
        "serve",
        help="serve both models over gRPC with Ray Serve",
        description="Starts Ray (or joins --address), Ray Serve's gRPC proxy and the application. "
        "Settings come from defaults < --config YAML < T5ELECTRA_* environment < these flags.",
    )
    serve.add_argument("--port", type=int, help="gRPC port (default 9000)")
    serve.add_argument("--t5-model", metavar="ID_OR_PATH", help="T5-family checkpoint (default: embedded tiny-t5)")
    serve.add_argument(
        "--electra-model", metavar="ID_OR_PATH", help="ELECTRA discriminator (default: embedded tiny-electra)"
    )
    serve.add_argument(
        "--electra-generator",
        metavar="ID_OR_PATH",
        help="ELECTRA generator for DetectReplacements suggestions; 'embedded' for the embedded tiny one "
        "(default: none, suggestions off)",
    )
    serve.add_argument("--config", type=Path, help="Serve config YAML (e.g. deployments/gpu.yaml)")
    serve.add_argument(
        "--address",
        help="existing Ray cluster (auto, HOST:PORT of its GCS, or ray://HOST:10001); deploy and return. "
        "The cluster's token is presented when RAY_AUTH_MODE=token, RAY_AUTH_TOKEN or ~/.ray/auth_token says so",
    )
    serve.set_defaults(run=_serve)

    status = commands.add_parser(
        "status",
        help="show a Ray cluster's nodes, applications, deployments and where each replica runs",
        description="Joins the Ray cluster at --address as a driver and prints its nodes (alive or dead, "
        "resources, proxy) and, for every Serve application, each deployment's status and replicas with the "
        "node each runs on. Works against a cluster started by `ray start` and against the Ray of a "
        "running `t5electra serve`.",
    )
    _cluster_flags(status)
    status.add_argument("--json", action="store_true", help="print the status as JSON")
    status.set_defaults(run=_status)

    shutdown = commands.add_parser(
        "shutdown",
        help="remove the application from a Ray cluster",
        description="Deletes the Serve application (replicas finish their requests first, within Serve's "
        "graceful shutdown timeout); --all also stops Ray Serve's controller and proxies. The Ray cluster "
        "itself keeps running.",
    )
    _cluster_flags(shutdown)
    shutdown.add_argument("--app", default="t5electra", help="application name (t5electra)")
    shutdown.add_argument("--all", action="store_true", help="every application and Ray Serve itself")
    shutdown.set_defaults(run=_shutdown)

    generate = commands.add_parser(
        "generate",
        help="call Generate (streams to the terminal)",
        description="Sends TEXT (a prefixed prompt) to a running server and prints the answer as it is "
        "generated. Unset parameters take the server's defaults.",
    )
    generate.add_argument("text")
    _client_flags(generate)
    generate.add_argument("--max-new-tokens", type=int)
    generate.add_argument("--min-new-tokens", type=int)
    generate.add_argument("--num-beams", type=int)
    generate.add_argument("--do-sample", action="store_true", help="sample instead of greedy decoding")
    generate.add_argument("--temperature", type=float)
    generate.add_argument("--top-k", type=int)
    generate.add_argument("--top-p", type=float)
    generate.add_argument("--repetition-penalty", type=float)
    generate.add_argument("--num-return-sequences", type=int)
    generate.add_argument("--seed", type=int)
    generate.add_argument("--stop", action="append", metavar="TEXT", help="stop sequence (repeatable)")
    generate.add_argument("--no-stream", action="store_true", help="wait for the whole answer")
    generate.add_argument(
        "--logprobs",
        type=int,
        metavar="K",
        dest="show_logprobs",
        help="list each token's log-probability and the K most likely alternatives (0..10)",
    )
    generate.set_defaults(run=_generate)

    detect = commands.add_parser(
        "detect",
        help="call DetectReplacements and highlight replaced words",
        description="Sends TEXT to a running server and prints it with the words the ELECTRA "
        "discriminator thinks were replaced highlighted.",
    )
    detect.add_argument("text")
    _client_flags(detect)
    detect.add_argument("--threshold", type=float, help="score from which a token counts as replaced (0.5)")
    detect.add_argument("--scores", action="store_true", help="also list every token with its score")
    detect.add_argument("--words", action="store_true", help="also list every word with its score")
    detect.add_argument("--word-scoring", choices=["max", "first", "mean"], help="word score from its tokens (max)")
    detect.add_argument(
        "--suggest", type=int, metavar="N", help="up to N likely originals per replaced word (needs a generator)"
    )
    detect.add_argument(
        "--offsets", choices=list(_OFFSET_UNITS), default="code-point", help="unit of offsets (code-point)"
    )
    detect.set_defaults(run=_detect)

    tokenize = commands.add_parser(
        "tokenize",
        help="call Tokenize: the tokens a model reads and bills",
        description="Tokenizes TEXT with the served model's tokenizer exactly as its RPC would.",
    )
    tokenize.add_argument("text")
    _client_flags(tokenize)
    tokenize.add_argument("--model", choices=["t5", "electra"], default="t5")
    tokenize.set_defaults(run=_tokenize)

    models = commands.add_parser("models", help="call GetModelInfo: the served models and what they accept")
    _client_flags(models)
    models.set_defaults(run=_models)

    load = commands.add_parser(
        "loadtest",
        help="load-test a running server and report throughput and latency",
        description="Closed loop (--concurrency workers back to back) or open loop (--rate requests/s "
        "with Poisson arrivals). Latency is per request, send to last byte; errors are counted by status "
        "code; requests started in the warm-up are not reported.",
    )
    load.add_argument("--address", default="localhost:9000")
    load.add_argument("--rpc", choices=["generate", "generate-stream", "detect"], default="generate")
    load.add_argument("--concurrency", type=int, default=4, help="closed-loop workers (4)")
    load.add_argument("--rate", type=float, help="open loop: requests per second")
    load.add_argument("--duration", type=float, default=10.0, help="measured seconds (10)")
    load.add_argument("--requests", type=int, help="measured requests, instead of --duration")
    load.add_argument("--warmup", type=float, default=2.0, help="seconds excluded from figures (2)")
    load.add_argument("--timeout", type=float, default=30.0, help="per-request deadline (30)")
    load.add_argument("--prompts", type=Path, help="file with one prompt per line (default: built-in set)")
    load.add_argument("--max-new-tokens", type=int, help="for generate and generate-stream")
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
        "random weights unless --t5-model/--electra-model give real ones). About 15 minutes on 2 cores; "
        "--quick: about 2 minutes.",
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
    bench.add_argument("--t5-model", help="real weights for the small size: hub id or path (e.g. t5-small)")
    bench.add_argument("--electra-model", help="real weights for the small size: hub id or path")
    bench.add_argument("--json", type=Path, metavar="PATH", help="write every figure, machine and versions as JSON")
    bench.add_argument("--plot", type=Path, metavar="PATH.png", help="throughput and p99 against concurrency")
    bench.add_argument("--markdown", type=Path, metavar="PATH.md", help="the tables as the README shows them")
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
        "for a seed. With one thread, tiny-t5 takes about 25 minutes, tiny-electra about 30 and the generator "
        "about 5.",
    )
    make.add_argument("--out", type=Path, default=Path(str(CHECKPOINTS)), help="where to write (default: package)")
    make.add_argument("--only", choices=["t5", "electra", "generator"], help="train one of them")
    make.add_argument("--seed", type=int, default=0)
    make.add_argument("--t5-steps", type=int, default=8000)
    make.add_argument("--electra-steps", type=int, default=9000)
    make.add_argument("--generator-steps", type=int, default=3000)
    make.add_argument("--threads", type=int, default=1, help="torch threads (1, as the shipped checkpoints)")
    make.set_defaults(run=_make_checkpoints)
    return root


def _cluster_flags(command: argparse.ArgumentParser) -> None:
    command.add_argument("--address", default="auto", help="Ray cluster (auto, HOST:PORT or ray://HOST:PORT)")


def _client_flags(command: argparse.ArgumentParser) -> None:
    command.add_argument("--address", default="localhost:9000", help="server host:port (localhost:9000)")
    command.add_argument("--timeout", type=float, default=30.0, help="deadline in seconds (30)")
    command.add_argument("--json", action="store_true", help="print the full answer as JSON")


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    args = parser().parse_args(argv)
    return args.run(args)


if __name__ == "__main__":
    sys.exit(main())
