"""``t5electra make-checkpoints``: its flags beside the run that reads them.
The training is ``tools/training``; torch and it are imported when the
command runs, so that ``--help`` stays quick."""

from __future__ import annotations

import argparse
from pathlib import Path

from t5electra.server.embedded import CHECKPOINTS

# The shipped ELECTRA checkpoints' training cycles (their training.json files).
ELECTRA_STEPS = (6000, 16000)
GENERATOR_STEPS = (16000,)


def register(commands: argparse._SubParsersAction) -> None:
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
