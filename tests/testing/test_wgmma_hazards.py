"""deepgemm.testing.wgmma_hazards on hand-written SASS: what it must flag (a write to the A fragment of a
group still pending, an accumulator touched before its group retired, either along one path of a
branch or across a loop's back edge) and what it must not (writes after the retiring DEPBAR, HGMMAs
chaining on an accumulator, reads of an A fragment)."""

from __future__ import annotations

from deepgemm.testing.wgmma_hazards import parse_sass, wgmma_hazards


def _sass(*lines: str) -> str:
    """cuobjdump-style text: an instruction a line at addresses 0x0, 0x10, ..., each with its control word."""
    out = ["        code for sm_90a", "        Function : k"]
    for i, text in enumerate(lines):
        out.append(f"        /*{16 * i:04x}*/                   {text} ;  /* 0x0000000000000000 */")
        out.append("                                                       /* 0x000fe20000000000 */")
    return "\n".join(out)


def _group(a: int, acc: int = 24) -> list[str]:
    """One WGMMA group of a k-block: four m64n8k16 register-A HGMMAs on A fragment R<a>.. (16 registers)."""
    return [f"HGMMA.64x8x16.F32.BF16 R{acc + 4 * s}, R{a + 4 * s}, gdesc[UR8], R{acc + 4 * s}"
            + (", gsb0" if s == 3 else "") for s in range(4)]


def test_parse_reads_addresses_predicates_and_operands():
    code = parse_sass(_sass("@!P0 LDS.128 R64, [R14+UR12]", "EXIT"))
    assert [(i.addr, i.predicated, i.opcode) for i in code] == [(0, True, "LDS.128"), (16, False, "EXIT")]
    assert code[0].operands == ("R64", "[R14+UR12]")


def test_a_fragment_rewritten_while_its_group_may_be_pending_is_flagged():
    # Four groups in flight, wait until at most 3 pend: the last group (R60..R75) may still read its
    # fragment when the conversion overwrites R60 (what ptxas made of the decode k-loop).
    sass = _sass(*_group(44), *_group(60), "WARPGROUP.DEPBAR.LE gsb0, 0x3", "LDS.128 R60, [R14+UR12]",
                 "HMUL2.BF16_V2 R70, R70, R76", "EXIT")
    hazards = wgmma_hazards(sass)
    assert len(hazards) == 2
    assert "LDS.128 R60" in hazards[0] and "R60, R61, R62, R63" in hazards[0]
    assert "HMUL2.BF16_V2 R70" in hazards[1]


def test_writes_after_the_retiring_wait_and_reads_are_not_flagged():
    sass = _sass(*_group(44), "WARPGROUP.DEPBAR.LE gsb0, 0x3", "IADD3 R1, R44, R45, RZ",  # a read: fine
                 *_group(60), "WARPGROUP.DEPBAR.LE gsb0, 0x1", "LDS.128 R44, [R14]",     # R44.. retired
                 "WARPGROUP.DEPBAR.LE gsb0, 0x0", "MOV R60, R24", "FADD R24, R24, R28", "EXIT")
    assert wgmma_hazards(sass) == []


def test_accumulators_touched_before_their_group_retired_are_flagged():
    sass = _sass(*_group(44), *_group(60), "WARPGROUP.DEPBAR.LE gsb0, 0x1", "FADD R30, R24, R28",
                 "WARPGROUP.DEPBAR.LE gsb0, 0x0", "FADD R31, R24, R28", "EXIT")
    hazards = wgmma_hazards(sass)
    assert len(hazards) == 1 and "FADD R30" in hazards[0]


def test_a_path_that_skips_the_wait_is_enough():
    # @P0 jumps over the DEPBAR: on that path the group is still pending at the write.
    sass = _sass(*_group(44), "@P0 BRA 0x60", "WARPGROUP.DEPBAR.LE gsb0, 0x0", "MOV R44, RZ", "EXIT")
    hazards = wgmma_hazards(sass)
    assert len(hazards) == 1 and "MOV R44" in hazards[0]
    unconditional = _sass(*_group(44), "WARPGROUP.DEPBAR.LE gsb0, 0x0", "BRA 0x70", "NOP", "MOV R44, RZ",
                          "EXIT")
    assert wgmma_hazards(unconditional) == []


def test_groups_pending_across_a_loop_back_edge():
    # Loop body: write buffer R44.., issue it, wait to 1 pending, branch back. The next pass overwrites
    # R44.. while the group issued in the pass before may still pend: flagged. With a wait to 0 pending
    # before the back edge, nothing is.
    body = ["LDS.128 R44, [R14]", *_group(44), "WARPGROUP.DEPBAR.LE gsb0, 0x{n}", "@P0 BRA 0x0", "EXIT"]
    flagged = wgmma_hazards(_sass(*(line.format(n=1) for line in body)))
    assert len(flagged) == 1 and "LDS.128 R44" in flagged[0]
    assert wgmma_hazards(_sass(*(line.format(n=0) for line in body))) == []
