"""Regenerates the checked-in Python stubs from ``protos/``.

Run from the repository root::

    python -m t5electra.protocol.codegen

The stubs are checked in so that installing the package never needs
grpcio-tools; ``tests/test_stubs.py`` fails when they drift from the protos.
grpcio-tools writes absolute imports (``from t5electra.v1 import ...``) and
module names that only work when the proto root is on ``sys.path``; they are
rewritten so the stubs live inside ``t5electra.protocol.v1``.
"""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

PROTO_PACKAGE = "t5electra/v1"
REPO_ROOT = Path(__file__).resolve().parent.parent
PROTO_ROOT = REPO_ROOT / "protos"
STUB_DIR = REPO_ROOT / "protocol" / "v1"

_ABSOLUTE_IMPORT = re.compile(r"^from t5electra\.v1 import (\w+_pb2)", re.MULTILINE)
# The module name protobuf gives the generated classes; pickle (Ray ships
# request protos between processes) must be able to import it.
_MODULE_NAME = re.compile(r"'t5electra\.v1\.(\w+_pb2)'")


def generate(proto_root: Path, out_dir: Path) -> list[Path]:
    """Compiles every proto of the package into ``out_dir``; returns the files written."""
    from grpc_tools import protoc  # dev-only dependency

    protos = sorted((proto_root / PROTO_PACKAGE).glob("*.proto"))
    if not protos:
        raise FileNotFoundError(f"no .proto files under {proto_root / PROTO_PACKAGE}")
    scratch = out_dir / "_protoc"
    scratch.mkdir(parents=True, exist_ok=True)
    include = Path(protoc.__file__).parent / "_proto"
    args = [
        "protoc",
        f"-I{proto_root}",
        f"-I{include}",
        f"--python_out={scratch}",
        f"--pyi_out={scratch}",
        f"--grpc_python_out={scratch}",
        *(str(p.relative_to(proto_root)) for p in protos),
    ]
    if protoc.main(args) != 0:
        raise RuntimeError("protoc failed: " + " ".join(args))
    written = []
    for produced in sorted((scratch / PROTO_PACKAGE).iterdir()):
        target = out_dir / produced.name
        text = _ABSOLUTE_IMPORT.sub(r"from . import \1", produced.read_text())
        target.write_text(_MODULE_NAME.sub(r"'t5electra.protocol.v1.\1'", text))
        written.append(target)
    for leftover in sorted(scratch.rglob("*"), reverse=True):
        leftover.unlink() if leftover.is_file() else leftover.rmdir()
    scratch.rmdir()
    return written


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=STUB_DIR, help="where to write the stubs")
    args = parser.parse_args(argv)
    for path in generate(PROTO_ROOT, args.out):
        print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
