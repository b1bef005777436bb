"""A static check of a kernel's SASS for register hazards of asynchronous WGMMAs (Hopper HGMMA).

An HGMMA with its A operand in registers reads those registers, and reads and writes its accumulator
registers, some time after it issues: until a ``WARPGROUP.DEPBAR.LE gsb0, N`` has retired its group, no
other instruction may write its A registers, and none may touch its accumulators (PTX: ``wgmma.mma_async``
"accessing the accumulator register or the input registers containing fragments of matrix A ... without
waiting for the completion is undefined behavior"). Register allocation is the assembler's, so a kernel
whose PTX keeps every fragment apart can still be assembled into SASS that overwrites the A fragment of
a group in flight with the next one (what ptxas 13.0-13.5 did with four register-A groups in flight),
and it then computes with whatever the register held when the tensor core got to it: wrong values that
depend on timing. Reading the SASS is the only way to see it.

``wgmma_hazards(sass)`` walks the control-flow graph of ``cuobjdump -sass`` text as a dataflow problem:
the state at each instruction is the union over all paths of the register sets of the groups that may
be pending (most recent first) and of the group being built; an HGMMA with ``gsb0`` closes a group, a
DEPBAR keeps the N most recent. It returns one line per instruction that writes a pending A register or
reads or writes a pending accumulator (HGMMAs chaining on an accumulator are ordered by the hardware
and not counted). ``find_cuobjdump()`` locates the disassembler (the ``nvidia-cuda-cuobjdump`` wheel, a
CUDA toolkit or PATH; it runs the ``nvdisasm`` beside it, the ``nvidia-cuda-nvdisasm`` wheel)."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

from ..jit import knobs

_LINE = re.compile(r"^\s*/\*([0-9a-f]{4,})\*/\s+(.*?)\s*;")
_REG = re.compile(r"(?<![A-Z_])R(\d+)(\.64)?\b")
_HGMMA = re.compile(r"HGMMA\.64x(\d+)x\d+\.(F32|F16)")
_DEPBAR = re.compile(r"WARPGROUP\.DEPBAR\.LE\s+gsb0,\s*(0x[0-9a-f]+|\d+)")
_BRANCH_TARGET = re.compile(r"(0x[0-9a-f]+)")
# Opcodes whose first register operand is a source: stores, reductions, barriers, branches, ...
_NO_REGISTER_DEST = ("ST", "RED", "BRA", "EXIT", "BAR", "SYNCS", "WARPGROUP", "WARPSYNC", "NOP", "MEMBAR",
                     "FENCE", "ERRBAR", "CGAERRBAR", "CCTL", "BSSY", "BSYNC", "UTMA", "USETMAXREG", "YIELD",
                     "ELECT", "R2P", "CALL", "RET", "BPT", "HGMMA", "ARRIVES", "UBLKCP", "UTMACCTL")
_MAX_PENDING = 16


@dataclass(frozen=True)
class Instr:
    addr: int
    predicated: bool
    opcode: str
    operands: tuple[str, ...]
    text: str


def parse_sass(sass: str) -> list[Instr]:
    """The instructions of ``cuobjdump -sass`` text, in address order (one function)."""
    out = []
    for line in sass.splitlines():
        m = _LINE.match(line)
        if not m:
            continue
        text = m.group(2).strip()
        predicated = text.startswith("@")
        body = text.split(None, 1)[1] if predicated else text
        opcode, _, rest = body.partition(" ")
        operands = tuple(op.strip() for op in rest.split(",")) if rest.strip() else ()
        out.append(Instr(int(m.group(1), 16), predicated, opcode, operands, text))
    return out


def _regs(operand: str, width: int = 1) -> set[int]:
    found = set()
    for m in _REG.finditer(operand):
        base = int(m.group(1))
        n = 2 if m.group(2) else width
        found.update(range(base, base + n))
    return found


def _dest_width(opcode: str) -> int:
    if ".128" in opcode:
        return 4
    if ".64" in opcode or ".WIDE" in opcode or (opcode.startswith("CS2R") and ".32" not in opcode):
        return 2
    return 1


def _written(ins: Instr) -> set[int]:
    """General registers ``ins`` writes (RZ and predicates, uniform and barrier registers excluded)."""
    if ins.opcode.startswith(_NO_REGISTER_DEST) or not ins.operands:
        return set()
    first = ins.operands[0]
    if re.fullmatch(r"!?U?P(\d+|T)", first) and len(ins.operands) > 1:
        first = ins.operands[1]  # a predicate output first (SHFL, LOP3 with P out): the register after
    if not re.fullmatch(r"R\d+(\.reuse)?", first):
        return set()
    return _regs(first.replace(".reuse", ""), _dest_width(ins.opcode))


def _read(ins: Instr) -> set[int]:
    regs = set()
    for op in ins.operands[1:] if _written(ins) else ins.operands:
        regs |= _regs(op.replace(".reuse", ""))  # a 64-bit address register says so (R6.64)
    return regs


def _successors(code: list[Instr], index: dict[int, int], i: int) -> list[int]:
    ins = code[i]
    nxt = [i + 1] if i + 1 < len(code) else []
    if ins.opcode.startswith("BRA") or ins.opcode.startswith("JMP"):
        targets = [index[int(t, 16)] for t in _BRANCH_TARGET.findall(" ".join(ins.operands))
                   if int(t, 16) in index]
        conditional = ins.predicated or ".U.ANY" in ins.opcode or ".DIV" in ins.opcode
        return targets + nxt if conditional else targets
    if ins.opcode.startswith(("EXIT", "RET")):
        return nxt if ins.predicated else []
    if ins.opcode.startswith(("BRX", "JMX")):
        raise ValueError(f"indirect branch at {ins.addr:#x}: {ins.text}")
    return nxt


# State: (open A regs, open accumulators, pending groups' (A, accumulator) sets, most recent first).
_Group = tuple[frozenset, frozenset]
_State = tuple[frozenset, frozenset, tuple[_Group, ...]]


def _join(a: _State | None, b: _State) -> _State:
    if a is None:
        return b
    pending = []
    for k in range(max(len(a[2]), len(b[2]))):
        ga = a[2][k] if k < len(a[2]) else (frozenset(), frozenset())
        gb = b[2][k] if k < len(b[2]) else (frozenset(), frozenset())
        pending.append((ga[0] | gb[0], ga[1] | gb[1]))
    return a[0] | b[0], a[1] | b[1], tuple(pending)


def _step(ins: Instr, state: _State) -> _State:
    open_a, open_acc, pending = state
    m = _HGMMA.match(ins.opcode)
    if m:
        n, acc_type = int(m.group(1)), m.group(2)
        acc = frozenset(_regs(ins.operands[0], n // 2 if acc_type == "F32" else n // 4))
        a = frozenset(_regs(ins.operands[1], 4)) if re.fullmatch(r"R\d+", ins.operands[1]) else frozenset()
        open_a, open_acc = open_a | a, open_acc | acc
        if ins.operands[-1] == "gsb0":
            pending = ((open_a, open_acc), *pending)
            if len(pending) > _MAX_PENDING:
                tail = pending[_MAX_PENDING - 1:]
                merged = (frozenset().union(*(g[0] for g in tail)), frozenset().union(*(g[1] for g in tail)))
                pending = (*pending[:_MAX_PENDING - 1], merged)
            open_a, open_acc = frozenset(), frozenset()
        return open_a, open_acc, pending
    m = _DEPBAR.search(ins.text)
    if m:
        return open_a, open_acc, pending[:int(m.group(1), 0)]
    return state


def wgmma_hazards(sass: str) -> list[str]:
    """Instructions of ``sass`` that may write a pending HGMMA's A registers, or read or write its
    accumulators, on some path (see the module docstring); empty when there are none."""
    code = parse_sass(sass)
    index = {ins.addr: i for i, ins in enumerate(code)}
    states: list[_State | None] = [None] * len(code)
    if not code:
        return []
    states[0] = (frozenset(), frozenset(), ())
    work = [0]
    while work:
        i = work.pop()
        out = _step(code[i], states[i])
        for j in _successors(code, index, i):
            joined = _join(states[j], out)
            if joined != states[j]:
                states[j] = joined
                work.append(j)
    hazards = []
    for ins, state in zip(code, states, strict=True):
        if state is None or _HGMMA.match(ins.opcode):
            continue
        open_a, open_acc, pending = state
        a_regs = open_a.union(*(g[0] for g in pending))
        acc_regs = open_acc.union(*(g[1] for g in pending))
        written, read = _written(ins), _read(ins)
        clash = sorted((written & a_regs) | ((written | read) & acc_regs))
        if clash:
            hazards.append(f"{ins.addr:#06x} {ins.text}  (in flight: {', '.join(f'R{r}' for r in clash)})")
    return hazards


def find_cuobjdump() -> str | None:
    """``cuobjdump``: on PATH, then in the CUDA toolkit (``CUDA_HOME``, read through deepgemm.jit.knobs),
    then from the ``nvidia-cuda-cuobjdump`` wheel in this interpreter's site-packages."""
    candidates = [shutil.which("cuobjdump")]
    home = knobs.cuda_home()
    if home is not None:
        candidates.append(str(home / "bin" / "cuobjdump"))
    for entry in sys.path:
        root = Path(entry) / "nvidia"
        if root.is_dir():
            candidates += [str(p) for p in sorted(root.glob("cu*/bin/cuobjdump"))]
    for candidate in candidates:
        if candidate and Path(candidate).is_file() and os.access(candidate, os.X_OK):
            return candidate
    return None


def disassemble(cubin: bytes, cuobjdump: str) -> str:
    """``cuobjdump -sass`` of ``cubin``."""
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "kernel.cubin"
        path.write_bytes(cubin)
        return subprocess.run([cuobjdump, "-sass", str(path)], check=True, capture_output=True,
                              text=True).stdout
