"""``t5electra bench``: its flags beside the run that reads them. The bench
itself is ``tools/bench``; it is imported when the command runs, so that
``--help`` stays quick."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any


def register(commands: argparse._SubParsersAction) -> None:
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
        "--no-overload",
        action="store_true",
        help="skip the overload point (Generate open-loop at twice the served capacity, 2 s deadline, plain client)",
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


def _bench(args: argparse.Namespace) -> int:
    import tempfile

    from t5electra.tools.bench import report, runner

    chosen: dict[str, Any] = {
        "t5_model": args.t5_model,
        "electra_model": args.electra_model,
        "max_new_tokens": args.max_new_tokens,
        "torch_threads": args.torch_threads,
        "mixed": not args.no_mixed,
        "overload": not args.no_overload,
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
