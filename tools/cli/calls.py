"""Calling a running server: ``generate``, ``detect``, ``tokenize`` and
``models``. The client is imported when a command runs, so
``--help`` stays quick."""

from __future__ import annotations

import argparse
import functools
import json
import sys
from collections.abc import Callable
from dataclasses import asdict
from typing import Any

OFFSET_UNITS = {"code-point": "code_point", "utf8": "utf8_byte", "utf16": "utf16_code_unit"}
"""The ``--offsets`` choices and the wire's names for them."""


def register(commands: argparse._SubParsersAction) -> None:
    _register_generate(commands)
    _register_detect(commands)

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


def _register_generate(commands: argparse._SubParsersAction) -> None:
    generate = commands.add_parser(
        "generate",
        help="call Generate (streams to the terminal)",
        description="Sends TEXT (a prefixed prompt) to a running server and prints the answer as it is "
        "generated. Unset parameters take the server's defaults.",
    )
    generate.add_argument("text")
    _client_flags(generate)
    for flag in ("--max-new-tokens", "--min-new-tokens", "--num-beams"):
        generate.add_argument(flag, type=int)
    generate.add_argument("--do-sample", action="store_true", help="sample instead of greedy decoding")
    for flag, kind in (
        ("--temperature", float),
        ("--top-k", int),
        ("--top-p", float),
        ("--repetition-penalty", float),
        ("--num-return-sequences", int),
        ("--seed", int),
    ):
        generate.add_argument(flag, type=kind)
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


def _register_detect(commands: argparse._SubParsersAction) -> None:
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
        "--offsets", choices=list(OFFSET_UNITS), default="code-point", help="unit of offsets (code-point)"
    )
    detect.set_defaults(run=_detect)


def _client_flags(command: argparse.ArgumentParser) -> None:
    command.add_argument("--address", default="localhost:9000", help="server host:port (localhost:9000)")
    command.add_argument("--timeout", type=float, default=30.0, help="deadline in seconds (30)")
    command.add_argument("--json", action="store_true", help="print the full answer as JSON")


def _calling(command: Callable[[argparse.Namespace, Any], int]) -> Callable[[argparse.Namespace], int]:
    """Runs ``command`` with a client of ``--address``; a failed call prints
    its status code and message on stderr and exits 1."""

    @functools.wraps(command)
    def run(args: argparse.Namespace) -> int:
        from t5electra.clients import Client, T5ElectraError

        with Client(args.address, timeout=args.timeout) as client:
            try:
                return command(args, client)
            except T5ElectraError as error:
                print(f"error: {error.code.name}: {error.details}", file=sys.stderr)
                return 1

    return run


def _print_json(answer: Any) -> None:
    print(json.dumps(answer, indent=2))


@_calling
def _generate(args: argparse.Namespace, client: Any) -> int:
    params = _generation_params(args)
    streamable = (args.num_beams or 1) == 1 and (args.num_return_sequences or 1) == 1
    if args.json:
        generation = client.generate(args.text, **params)
        _print_json(
            {
                "sequences": [asdict(s) for s in generation.sequences],
                "input_tokens": generation.input_tokens,
                "output_tokens": generation.output_tokens,
                "model": generation.model,
                "metadata": generation.metadata,
            }
        )
    elif streamable and not args.no_stream:
        stream = client.generate_stream(args.text, **params)
        for piece in stream:
            print(piece, end="", flush=True)
        print()
        if stream.end is not None:
            ending = FINISH_REASONS.get(stream.end.finish_reason, stream.end.finish_reason)
            print(f"[{ending}, {stream.end.generated_tokens} tokens]", file=sys.stderr)
            _print_logprobs(stream.end.tokens)
    else:
        for sequence in client.generate(args.text, **params).sequences:
            score = "" if sequence.score is None else f"  [score {sequence.score:.4f}]"
            print(sequence.text + score)
            _print_logprobs(sequence.tokens)
    return 0


FINISH_REASONS = {
    "EOS_TOKEN": "ended by the model",
    "LENGTH": "stopped at max_new_tokens",
    "STOP_SEQUENCE": "stopped at a stop sequence",
}
"""How a person is told why a streamed answer ended (--json keeps the enum names)."""


def _generation_params(args: argparse.Namespace) -> dict[str, Any]:
    """The GenerationParameters fields given on the command line."""
    from t5electra.clients.options import GENERATION_FIELDS

    params: dict[str, Any] = {name: getattr(args, name) for name in GENERATION_FIELDS if hasattr(args, name)}
    params["do_sample"] = True if args.do_sample else None
    params["stop_sequences"] = args.stop or None
    if args.show_logprobs is not None:
        params["logprobs"], params["top_logprobs"] = True, args.show_logprobs
    return params


def _print_logprobs(tokens: Any) -> None:
    for token in tokens:
        alternatives = "  ".join(f"{a.token} {a.logprob:.3f}" for a in token.top)
        print(f"  {token.logprob:8.4f}  {token.token:<16} {alternatives}")


@_calling
def _detect(args: argparse.Namespace, client: Any) -> int:
    detection = client.detect_replacements(
        args.text,
        threshold=args.threshold,
        word_scoring=args.word_scoring,
        offset_unit=OFFSET_UNITS[args.offsets],
        suggestions=args.suggest,
    )
    if args.json:
        _print_json(
            {
                "tokens": [asdict(t) for t in detection.tokens],
                "words": [asdict(w) for w in detection.words],
                "replaced_spans": [asdict(s) for s in detection.replaced_spans],
                "replaced_fraction": detection.replaced_fraction,
                "offset_unit": detection.offset_unit,
                "model": detection.model,
            }
        )
        return 0
    at = _code_points(args.text, OFFSET_UNITS[args.offsets])
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


def _code_points(text: str, unit: str) -> dict[int, int]:
    """Offsets in ``unit`` back to code points, for highlighting."""
    from t5electra.server.offsets import converter

    to_unit = converter(text, unit)
    return {to_unit(i): i for i in range(len(text) + 1)}


def highlight(text: str, spans: list[tuple[int, int]], color: bool) -> str:
    """The text with replaced spans in bold red on a terminal, else in [[ ]]."""
    opening, closing = ("\033[1;31m", "\033[0m") if color else ("[[", "]]")
    out, cursor = [], 0
    for start, end in spans:
        out += [text[cursor:start], opening, text[start:end], closing]
        cursor = end
    out.append(text[cursor:])
    return "".join(out)


@_calling
def _tokenize(args: argparse.Namespace, client: Any) -> int:
    tokenization = client.tokenize(args.text, model=args.model)
    if args.json:
        _print_json(asdict(tokenization))
        return 0
    for token in tokenization.tokens:
        where = "(added)" if token.special else f"[{token.start}:{token.end}]"
        print(f"{token.id:>8}  {token.token:<20} {where}")
    print(f"{tokenization.count} tokens of {tokenization.model}; at most {tokenization.max_tokens} accepted")
    return 0


@_calling
def _models(args: argparse.Namespace, client: Any) -> int:
    models = client.model_info()
    if args.json:
        _print_json([asdict(m) for m in models])
        return 0
    for m in models:
        print(f"{m.kind}: {m.name} ({m.architecture}, {m.parameters:,} parameters, {m.dtype} on {m.device})")
        print(f"  at most {m.max_input_tokens} input tokens, {m.max_input_chars} characters")
        if m.suggestion_generator:
            print(f"  suggestions from {m.suggestion_generator}")
        for field, accepted in m.parameters_accepted.items():
            print(f"  {field:<22} {accepted}")
    return 0
