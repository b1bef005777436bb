"""deepgemm.quant.wonly: quantisation, the packed layout (checked against an emulation of the kernel's
reads: which bytes each GPU lane loads and how it turns them into WGMMA A fragments), bit-exact round
trips, the magic-number constants of the kernel's conversions, and argument checks."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from deepgemm.quant import wonly

EDGE = (1, 7, 17, 65, 129, 1000)


def _random_q(shape, low, high, seed):
    generator = torch.Generator().manual_seed(seed)
    return torch.randint(low, high + 1, shape, generator=generator, dtype=torch.int8)


@pytest.mark.parametrize("n", EDGE)
@pytest.mark.parametrize("k", (1, 64, 129, 4097))
def test_int8_round_trip_is_bit_exact(n, k):
    q = _random_q((n, k), -128, 127, n * 7 + k)
    packed = wonly.pack_int8_weight(q)
    assert packed.dtype == torch.int8 and tuple(packed.shape) == wonly.packed_shape(n, k, 8)
    assert torch.equal(wonly.unpack_int8_weight(packed, n, k), q)


@pytest.mark.parametrize("symmetric", (True, False))
@pytest.mark.parametrize("n, k", [(1, 1), (7, 17), (65, 129), (129, 1000), (16, 4097)])
def test_int4_round_trip_is_bit_exact(n, k, symmetric):
    low, high = (-8, 7) if symmetric else (0, 15)
    q = _random_q((3, n, k), low, high, n + k)
    packed = wonly.pack_int4_weight(q, symmetric)
    assert packed.dtype == torch.uint8 and tuple(packed.shape) == (3, *wonly.packed_shape(n, k, 4))
    assert torch.equal(wonly.unpack_int4_weight(packed, n, k, symmetric), q)


def _fragment_coords(lane: int, step: int, register: int) -> tuple[tuple[int, int], tuple[int, int]]:
    """(row, col) in the 16 x 64 block of a register's low and high element (Wgmma16RS's A fragment)."""
    r, c = lane // 4, lane % 4
    row = r + 8 * (register % 2)
    col = 16 * step + 2 * c + 8 * (register // 2)
    return (row, col), (row, col + 1)


def _slab_bytes(packed: np.ndarray, slab: int, k_block: int, slab_bytes: int) -> np.ndarray:
    flat = packed.reshape(-1)
    num_k_blocks = packed.shape[-1] * 16 // slab_bytes
    start = (slab * num_k_blocks + k_block) * slab_bytes
    return flat[start: start + slab_bytes]


def test_int8_layout_matches_the_kernels_reads():
    n, k = 40, 200
    q = _random_q((n, k), -128, 127, 3)
    packed = wonly.pack_int8_weight(q).view(torch.uint8).numpy()
    full = torch.zeros(48, 256, dtype=torch.int16)  # padding holds Q = 0
    full[:n, :k] = q.to(torch.int16)
    for slab in range(3):
        for k_block in range(4):
            data = _slab_bytes(packed, slab, k_block, 1024)
            for lane in range(32):
                for half in range(2):
                    words = data[half * 512 + lane * 16: half * 512 + lane * 16 + 16].view("<u4")
                    for t in range(2):
                        step, lo, hi = 2 * half + t, int(words[2 * t]), int(words[2 * t + 1])
                        # f[0] = bytes 0, 1 of lo; f[1] = bytes 2, 3 of lo; f[2], f[3] the same of hi.
                        registers = [(lo, 0), (lo, 2), (hi, 0), (hi, 2)]
                        for register, (word, byte) in enumerate(registers):
                            got = [(word >> (8 * (byte + e)) & 0xFF) - 128 for e in range(2)]
                            coords = _fragment_coords(lane, step, register)
                            want = [int(full[slab * 16 + row, k_block * 64 + col]) for row, col in coords]
                            assert got == want, (slab, k_block, lane, step, register)


@pytest.mark.parametrize("symmetric", (True, False))
def test_int4_layout_matches_the_kernels_reads(symmetric):
    n, k = 40, 200
    low, high = (-8, 7) if symmetric else (0, 15)
    q = _random_q((n, k), low, high, 4)
    packed = wonly.pack_int4_weight(q, symmetric).numpy()
    bias = 8 if symmetric else 0
    full = torch.full((48, 256), bias, dtype=torch.int16)  # stored nibbles; padding holds Q = 0
    full[:n, :k] = q.to(torch.int16) + bias
    for slab in range(3):
        for k_block in range(4):
            data = _slab_bytes(packed, slab, k_block, 512)
            for lane in range(32):
                words = data[lane * 16: lane * 16 + 16].view("<u4")
                for step in range(4):
                    word = int(words[step])
                    for register in range(4):
                        # ((word >> 4j) & 0x000F000F): nibble j in the low half, j + 4 in the high one.
                        got = [(word >> (4 * register)) & 0xF, (word >> (4 * register + 16)) & 0xF]
                        coords = _fragment_coords(lane, step, register)
                        want = [int(full[slab * 16 + row, k_block * 64 + col]) for row, col in coords]
                        assert got == want, (slab, k_block, lane, step, register)


def _bits_as(value: int, dtype: torch.dtype) -> float:
    bits = torch.tensor([value], dtype=torch.int32 if dtype == torch.float32 else torch.int16)
    return float(bits.view(dtype)[0])


def _prmt(lo: int, hi: int, selector: int) -> int:
    """PTX prmt.b32 (default mode): result byte i is byte (selector nibble i) & 7 of hi:lo."""
    pool = (hi << 32 | lo).to_bytes(8, "little")
    return int.from_bytes(bytes(pool[(selector >> (4 * i)) & 7] for i in range(4)), "little")


def _lop3(a: int, b: int, c: int, lut: int) -> int:
    """PTX lop3.b32: result bit = bit (a << 2 | b << 1 | c) of `lut` (the table of F(0xF0, 0xCC, 0xAA))."""
    out = 0
    for bit in range(32):
        index = ((a >> bit) & 1) << 2 | ((b >> bit) & 1) << 1 | ((c >> bit) & 1)
        out |= ((lut >> index) & 1) << bit
    return out


def test_lop3_tables_of_the_dequant_wrappers():
    # ptx/dequant.cuh: lop3_and_or (0xEA) and lop3_and_xor (0x6A).
    assert _lop3(0xF0, 0xCC, 0xAA, 0xEA) == (0xF0 & 0xCC) | 0xAA == 0xEA
    assert _lop3(0xF0, 0xCC, 0xAA, 0x6A) == (0xF0 & 0xCC) ^ 0xAA == 0x6A
    generator = np.random.default_rng(0)
    for a, b, c in generator.integers(0, 2**32, size=(64, 3), dtype=np.uint64).tolist():
        assert _lop3(a, b, c, 0xEA) == (a & b) | c
        assert _lop3(a, b, c, 0x6A) == (a & b) ^ c


def _bf16_pair(word: int) -> tuple[float, float]:
    return _bits_as(word & 0xFFFF, torch.bfloat16), _bits_as(word >> 16, torch.bfloat16)


@pytest.mark.parametrize("i", (0, 2))
def test_int8_to_bf16_split_magic_is_exact_for_every_byte(i):
    """ptx::biased_bytes_as_bf16x2<i>: bytes u = q + 128 at i and i + 1 become the BF16 pair (q, q')."""
    for u in range(256):
        u2 = 255 - u
        word = (u << (8 * i)) | (u2 << (8 * (i + 1))) | (0x5A << (8 * (2 - i)))  # other bytes: noise
        t = _prmt(word, 0, 0x4040 | i | ((i + 1) << 8))
        assert t == u | u2 << 16
        x = _lop3(t, 0x007F007F, 0x43004300, 0xEA)
        y = _lop3(t, 0x00800080, 0x43804380, 0x6A)
        xs, ys = _bf16_pair(x), _bf16_pair(y)
        assert (xs[0] - ys[0], xs[1] - ys[1]) == (u - 128, u2 - 128)


def test_int8_times_a_bf16_scale_rounds_once_as_the_fp32_path():
    """q * s in BF16 (the kernel's mul.rn.bf16x2) equals the exact FP32 product rounded to BF16, which is
    what the reference computes: q and s have 8 significant bits each, so the FP32 product is exact."""
    q = torch.arange(-128, 128, dtype=torch.float32)
    scales = torch.tensor([1e-3, 0.0123, 0.5, 3.1416, 7.0 / 127, 1e-30]).to(torch.bfloat16)
    for scale in scales:
        exact = q.double() * float(scale)
        assert torch.equal(q * scale.float(), exact.float())  # exact in FP32
        assert torch.equal((q.to(torch.bfloat16) * scale), exact.float().to(torch.bfloat16))


def test_magic_number_constants_of_the_kernels_conversions():
    # BF16 0x4300 | nibble is 128 + nibble; FP16 0x6400 | u is 1024 + u.
    for u in range(16):
        assert _bits_as(0x4300 | u, torch.bfloat16) == 128 + u
        assert _bits_as(0x4300 + u, torch.bfloat16) - _bits_as(0x4300 + 8, torch.bfloat16) == u - 8
    for u in (0, 1, 127, 255):
        assert _bits_as(0x6400 | u, torch.float16) == 1024 + u
    assert _bits_as(0x6480, torch.float16) == 1152  # INT8 x FP16 bias: 1024 + 128


@pytest.mark.parametrize("dtype", (torch.bfloat16, torch.float16))
@pytest.mark.parametrize("group_size", (None, 64, 128, 256))
def test_quantize_int8_and_dequantize(group_size, dtype):
    w = torch.randn(33, 300, generator=torch.Generator().manual_seed(5))
    q, scales = wonly.quantize_int8(w, group_size, dtype)
    groups = wonly.num_k_groups(300, group_size)
    assert q.dtype == torch.int8 and scales.dtype == dtype and tuple(scales.shape) == (33, groups)
    back = wonly.dequantize(q, scales, None, group_size)
    size = 300 if group_size is None else group_size
    step = scales.float().repeat_interleave(size, dim=1)[:, :300]
    assert torch.all((back - w).abs() <= 0.5 * step + 1e-6 + 0.01 * w.abs())


@pytest.mark.parametrize("symmetric", (True, False))
def test_quantize_int4_and_dequantize(symmetric):
    w = torch.randn(2, 20, 200, generator=torch.Generator().manual_seed(6))
    q, scales, zeros = wonly.quantize_int4(w, 128, symmetric)
    assert tuple(scales.shape) == (2, 20, 2)
    assert (zeros is None) == symmetric
    if symmetric:
        assert int(q.min()) >= -8 and int(q.max()) <= 7
    else:
        assert zeros.dtype == torch.uint8 and int(zeros.max()) <= 15
        assert int(q.min()) >= 0 and int(q.max()) <= 15
    back = wonly.dequantize(q, scales, zeros, 128)
    step = scales.float().repeat_interleave(128, dim=-1)[..., :200]
    # Half a step of rounding; with zero points the rounded zero shifts the grid by up to half a step more.
    assert torch.all((back - w).abs() <= (0.5 if symmetric else 1.0) * step * 1.02 + 1e-6)


def test_packed_helpers_give_what_the_ops_take_and_dequantize_back():
    w = torch.randn(50, 136, generator=torch.Generator().manual_seed(7))
    b_packed, sb, zeros = wonly.quantize_w4a16(w, 128, symmetric=False, dtype=torch.float16)
    q, scales, z = wonly.quantize_int4(w, 128, False, torch.float16)
    assert tuple(sb.shape) == (2, 50) and sb.is_contiguous() and tuple(zeros.shape) == (2, 50)
    expected = wonly.dequantize(q, scales, z, 128)
    assert torch.equal(wonly.dequantize_w4a16(b_packed, sb, zeros, 50, 136, 128), expected)
    b8, s8 = wonly.quantize_w8a16(w, None)
    q8, scales8 = wonly.quantize_int8(w, None)
    expected = wonly.dequantize(q8, scales8, None, None)
    assert torch.equal(wonly.dequantize_w8a16(b8, s8, 50, 136, None), expected)


@pytest.mark.parametrize("call, error, match", [
    (lambda: wonly.pack_int8_weight(torch.zeros(4, 4)), TypeError, "integer dtype"),
    (lambda: wonly.pack_int8_weight(torch.zeros(4, dtype=torch.int8)), ValueError, "2-D"),
    (lambda: wonly.pack_int4_weight(torch.full((4, 4), 8, dtype=torch.int8)), ValueError, r"\[-8, 7\]"),
    (lambda: wonly.pack_int4_weight(torch.full((4, 4), -1, dtype=torch.int8), symmetric=False), ValueError,
     r"\[0, 15\]"),
    (lambda: wonly.unpack_int8_weight(torch.zeros(16, 64, dtype=torch.uint8), 16, 64), TypeError, "int8"),
    (lambda: wonly.unpack_int4_weight(torch.zeros(16, 64, dtype=torch.uint8), 16, 64), ValueError, "shape"),
    (lambda: wonly.quantize_int8(torch.randn(4, 64), 96), ValueError, "multiple of 64"),
    (lambda: wonly.quantize_int8(torch.randn(4, 64), 0), ValueError, "multiple of 64"),
    (lambda: wonly.quantize_int8(torch.randn(4, 64), True), TypeError, "group_size"),
    (lambda: wonly.quantize_int4(torch.randn(4, 64), 128, dtype=torch.float32), TypeError, "dtype"),
    (lambda: wonly.quantize_int4(torch.full((4, 64), float("nan"))), ValueError, "finite"),
    (lambda: wonly.quantize_int4(torch.randn(0, 64)), ValueError, "N, K > 0"),
    (lambda: wonly.quantize_int4(torch.randn(4, 64).to(torch.int32)), TypeError, "w must have dtype"),
])
def test_bad_arguments_raise_naming_the_rule(call, error, match):
    with pytest.raises(error, match=match):
        call()
