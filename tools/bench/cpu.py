"""The CPU that figures were measured on, named with the instruction sets
that decide int8 and bfloat16 speed: the machines this project is measured
on change from day to day (an AMD EPYC without AMX, an Intel Xeon with it),
so a figure without them cannot be compared with another."""

from __future__ import annotations

import platform
from pathlib import Path
from typing import Any

INSTRUCTION_SETS = ("avx512_vnni", "avx_vnni", "avx512_bf16", "amx_tile", "amx_int8", "amx_bf16")
"""The /proc/cpuinfo flags that int8 (VNNI, AMX int8) and bfloat16 (AVX-512
BF16, AMX bf16) kernels use."""


def _cpuinfo() -> tuple[str | None, set[str]]:
    info = Path("/proc/cpuinfo")
    if not info.exists():
        return None, set()
    name, flags = None, set()
    for line in info.read_text().splitlines():
        key, _, value = line.partition(":")
        if key.strip() == "model name" and name is None:
            name = value.strip()
        elif key.strip() == "flags" and not flags:
            flags = set(value.split())
    return name, flags


def describe() -> dict[str, Any]:
    """The CPU's model, its int8/bfloat16 instruction sets, and the vector
    width torch dispatches to."""
    import torch

    name, flags = _cpuinfo()
    return {
        "cpu": name or platform.processor() or platform.machine(),
        "instruction_sets": [flag for flag in INSTRUCTION_SETS if flag in flags],
        "torch_capability": torch.backends.cpu.get_cpu_capability(),
    }


def usable_precisions(requested: tuple[str, ...]) -> tuple[str, ...]:
    """``requested`` without bfloat16 where this CPU would emulate it."""
    from t5electra.server.loading import cpu_has_bfloat16

    return tuple(p for p in requested if p != "bfloat16" or cpu_has_bfloat16())


def line(described: dict[str, Any]) -> str:
    """One line for a table's caption."""
    sets = ", ".join(described["instruction_sets"]) or "no VNNI, BF16 or AMX"
    return f"{described['cpu']} ({sets}; torch {described['torch_capability']})"
