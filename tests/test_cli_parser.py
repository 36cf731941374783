"""The command line's surface without running anything: every subcommand
keeps its flags and defaults (scripts and operators rely on them), and each
subcommand is wired to the function that runs it."""

from __future__ import annotations

import argparse
import json

import pytest

from t5electra.tools.cli import highlight, parser

pytestmark = pytest.mark.unit

FLAGS = {
    "serve": "--address --config --electra-generator --electra-model --front --port --t5-model",
    "status": "--address --json",
    "shutdown": "--address --all --app",
    "generate": "--address --do-sample --json --logprobs --max-new-tokens --min-new-tokens --no-stream --num-beams "
    "--num-return-sequences --repetition-penalty --seed --stop --temperature --timeout --top-k --top-p",
    "detect": "--address --json --offsets --scores --suggest --threshold --timeout --word-scoring --words",
    "tokenize": "--address --json --model --timeout",
    "models": "--address --json --timeout",
    "loadtest": "--address --concurrency --duration --json --logprobs --max-new-tokens --min-new-tokens --mix "
    "--plain --plot --prompts --rate --requests --rpc --suggestions --timeout --warmup",
    "bench": "--concurrency --dtype --duration --electra-model --json --markdown --max-new-tokens --no-mixed "
    "--no-overload --no-peers --peers --plot --precisions --quick --rpcs --sizes --t5-model --torch-threads --workdir",
    "soak": "--burst-every --burst-factor --duration --json --kill-every --rate --rollout-every --timeout --workdir",
    "make-checkpoints": "--electra-steps --generator-steps --only --out --resume --save-every --seed --state-dir "
    "--t5-steps --threads",
}


def subcommands() -> dict[str, argparse.ArgumentParser]:
    return next(a for a in parser()._actions if isinstance(a, argparse._SubParsersAction)).choices


def test_every_subcommand_keeps_its_flags_in_order() -> None:
    found = subcommands()
    assert list(found) == list(FLAGS)
    for name, command in found.items():
        flags = sorted(o for a in command._actions for o in a.option_strings if o.startswith("--") and o != "--help")
        assert " ".join(flags) == FLAGS[name], name


def test_defaults_and_types_stay_as_documented() -> None:
    args = parser().parse_args(["generate", "translate English to German: hi", "--top-p", "0.9", "--stop", "."])
    assert (args.address, args.timeout, args.top_p, args.stop, args.show_logprobs) == (
        "localhost:9000",
        30.0,
        0.9,
        ["."],
        None,
    )
    assert parser().parse_args(["detect", "x", "--offsets", "utf16"]).offsets == "utf16"
    assert parser().parse_args(["status"]).address == "auto"
    mix = parser().parse_args(["loadtest", "--mix", json.dumps({"max_new_tokens": 4})]).mix
    assert mix == [{"max_new_tokens": 4}]
    soak = parser().parse_args(["soak"])
    assert (soak.duration, soak.rate, soak.kill_every, soak.rollout_every) == (600.0, 8.0, 120.0, 0.0)


def test_each_subcommand_runs_its_own_function() -> None:
    runs = {name: command.get_default("run").__name__ for name, command in subcommands().items()}
    assert runs == {name: "_" + name.replace("-", "_") for name in FLAGS}


def test_highlight_marks_spans_plainly_off_a_terminal() -> None:
    assert highlight("the cat sat", [(4, 7)], color=False) == "the [[cat]] sat"
    assert highlight("the cat sat", [(4, 7)], color=True) == "the \033[1;31mcat\033[0m sat"
