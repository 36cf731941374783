"""Regenerates the checked-in Python stubs from ``protos/``.

Run from the repository root::

    python -m t5electra.protocol.codegen

The stubs are checked in so that installing the package never needs
grpcio-tools; ``tests/test_stubs.py`` fails when they drift from the protos.
grpcio-tools writes absolute imports (``from t5electra.v1 import ...``) and
module names that only work when the proto root is on ``sys.path``; they are
rewritten so the stubs live inside ``t5electra.protocol.v1`` (the project's
API) and ``t5electra.protocol.inference`` (the Open Inference Protocol).
"""

from __future__ import annotations

import argparse
import re
import sys
from dataclasses import dataclass
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
PROTO_ROOT = REPO_ROOT / "protos"


@dataclass(frozen=True)
class Package:
    """A directory of protos and the subpackage of ``t5electra.protocol`` its stubs go to."""

    proto_dir: str
    subpackage: str

    @property
    def dotted(self) -> str:
        return self.proto_dir.replace("/", ".")


V1 = Package("t5electra/v1", "v1")
INFERENCE = Package("inference", "inference")
PACKAGES = (V1, INFERENCE)


def generate(proto_root: Path, out_dir: Path, package: Package = V1) -> list[Path]:
    """Compiles every proto of ``package`` into ``out_dir``; returns the files written."""
    from grpc_tools import protoc  # dev-only dependency

    protos = sorted((proto_root / package.proto_dir).glob("*.proto"))
    if not protos:
        raise FileNotFoundError(f"no .proto files under {proto_root / package.proto_dir}")
    absolute_import = re.compile(rf"^from {re.escape(package.dotted)} import (\w+_pb2)", re.MULTILINE)
    # The module name protobuf gives the generated classes; pickle (Ray ships
    # request protos between processes) must be able to import it.
    module_name = re.compile(rf"'{re.escape(package.dotted)}\.(\w+_pb2)'")
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
    for produced in sorted((scratch / package.proto_dir).iterdir()):
        target = out_dir / produced.name
        text = absolute_import.sub(r"from . import \1", produced.read_text())
        target.write_text(module_name.sub(rf"'t5electra.protocol.{package.subpackage}.\1'", text))
        written.append(target)
    for leftover in sorted(scratch.rglob("*"), reverse=True):
        leftover.unlink() if leftover.is_file() else leftover.rmdir()
    scratch.rmdir()
    return written


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--out", type=Path, default=REPO_ROOT / "protocol", help="where the stubs' subpackages (v1/, inference/) go"
    )
    args = parser.parse_args(argv)
    for package in PACKAGES:
        for path in generate(PROTO_ROOT, args.out / package.subpackage, package):
            print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
