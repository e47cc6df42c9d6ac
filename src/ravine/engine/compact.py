"""Compact state: optimizer state stored in fewer bytes than the update computes in.

The update always sees its state in the compute dtype (float32 for low-precision parameters); only what is
kept between steps is narrower. Two storages, chosen with ``state_dtype``:

* **A narrow float** (``state_dtype=torch.bfloat16`` for float32 parameters, or for bfloat16 ones): each state
  tensor is decoded to float32 before the update and rounded back after it. Rounding to bfloat16 is
  *stochastic* (up or down with probability proportional to the distance), so an EMA whose per-step change is
  below half a bfloat16 ulp still moves on average instead of being rounded away every step. The random bits
  are a hash of the element's position, the state key and a step counter kept in the parameter group
  (``state_rounding_step``), so a run and its resumed checkpoint round identically.
* **8-bit, blockwise** (``state_dtype="int8"``): each state tensor is split into blocks of :data:`BLOCK`
  elements; a block keeps its absolute maximum (float32) and one byte per element: the element divided by that
  maximum, in a tiny floating-point format rounded to nearest (Dettmers et al., "8-bit Optimizers via
  Block-wise Quantization", ICLR 2022, use blocks of the same size and a dynamic, exponent-based code).

  - Signed state (momenta): sign, 4-bit exponent, 3-bit mantissa (``int8``): 127 magnitudes spanning
    2⁻¹⁶…1 of the block maximum, relative spacing 2⁻³.
  - Non-negative state (second moments, which the algorithm names in ``nonnegative_state``): the square root
    is stored (halving the dynamic range to code, as 8-bit Adam implementations do), with a 4-bit exponent and
    4-bit mantissa (``uint8``): 255 magnitudes spanning 2⁻¹⁶…1 of the block's largest root.

  Values below the smallest magnitude are stored as zero. In the state dict a quantised tensor ``key`` is two
  entries: ``key`` (the codes, one row per block) and ``key_absmax`` (the block maxima).

Every function here is plain tensor arithmetic, so the fused path traces the same code into its kernel.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

BLOCK = 256  # elements per quantisation block
_SIGNED_MANTISSA, _UNSIGNED_MANTISSA = 3, 4
_SIGNED_TOP, _UNSIGNED_TOP = 127, 255
_MASK32 = 0xFFFFFFFF
NARROW_FLOATS = (torch.bfloat16, torch.float16)


# ---- the 8-bit code ---------------------------------------------------------------------------------------
def _magnitude_code(y: Tensor, mantissa: int, top: int) -> Tensor:
    """``y`` in [0, 1] (float32) to the nearest of ``top`` magnitudes with ``mantissa`` mantissa bits (int32);
    1.0 is code ``top``, each lower exponent ``2**mantissa`` codes below, 0 below the smallest."""
    shift = 23 - mantissa
    bits = y.view(torch.int32)
    rounded = (bits + (1 << (shift - 1))) >> shift  # exponent and mantissa of y, rounded to nearest
    return (rounded - ((127 << mantissa) - top)).clamp_(0, top)


def _magnitude_value(code: Tensor, mantissa: int, top: int) -> Tensor:
    """The float32 magnitude of ``code`` (int32), 0 for code 0: the inverse of :func:`_magnitude_code`."""
    shift = 23 - mantissa
    bits = (code + ((127 << mantissa) - top)) << shift
    return torch.where(code > 0, bits.view(torch.float32), 0.0)


def blocks_for(numel: int) -> int:
    return max(1, -(-numel // BLOCK))


def quantize(x: Tensor, *, nonnegative: bool, blocks: Any = None, aligned: bool = False) -> tuple[Tensor, Tensor]:
    """Codes ``(blocks, BLOCK)`` and block maxima ``(blocks,)`` of ``x`` (any shape, float32).

    ``aligned``: ``x`` fills its blocks exactly (no padding; inside a compiled step the padding of a symbolic
    length costs a masked load per vector even when it is 0)."""
    flat = x.reshape(-1).float()
    if blocks is None:
        blocks = blocks_for(flat.numel())
    if not aligned:
        flat = torch.nn.functional.pad(flat, (0, blocks * BLOCK - flat.numel()))
    flat = flat.view(blocks, BLOCK)
    if nonnegative:
        flat = flat.clamp_min(0).sqrt()
    magnitude = flat.abs()
    absmax = magnitude.amax(1)
    # one reciprocal per block and a multiply per element (a division per element costs several times more)
    y = magnitude * torch.where(absmax > 0, 1.0 / absmax, 1.0).unsqueeze(1)
    if nonnegative:
        return _magnitude_code(y, _UNSIGNED_MANTISSA, _UNSIGNED_TOP).to(torch.uint8), absmax
    code = _magnitude_code(y, _SIGNED_MANTISSA, _SIGNED_TOP)
    return torch.where(flat < 0, -code, code).to(torch.int8), absmax


CHUNK_BLOCKS = 4096  # eager encoding works on this many blocks at a time (1 M elements: bounded temporaries)


def quantize_in_chunks(x: Tensor, *, nonnegative: bool) -> tuple[Tensor, Tensor]:
    """:func:`quantize` for the eager paths: fresh all-zero state (most state at its first step) without
    arithmetic, and large tensors a chunk of blocks at a time, so its temporaries stay small."""
    flat = x.reshape(-1)
    blocks = blocks_for(flat.numel())
    dtype = torch.uint8 if nonnegative else torch.int8
    if not bool(flat.any()):
        return (torch.zeros((blocks, BLOCK), dtype=dtype, device=x.device),
                torch.zeros(blocks, dtype=torch.float32, device=x.device))
    if blocks <= CHUNK_BLOCKS:
        return quantize(flat, nonnegative=nonnegative, blocks=blocks)
    codes = torch.empty((blocks, BLOCK), dtype=dtype, device=x.device)
    absmax = torch.empty(blocks, dtype=torch.float32, device=x.device)
    for start in range(0, blocks, CHUNK_BLOCKS):
        stop = min(start + CHUNK_BLOCKS, blocks)
        part = flat[start * BLOCK: stop * BLOCK]
        codes[start:stop], absmax[start:stop] = quantize(part, nonnegative=nonnegative, blocks=stop - start)
    return codes, absmax


def dequantize(codes: Tensor, absmax: Tensor, shape: torch.Size | tuple[int, ...],
               aligned: bool = False) -> Tensor:
    """The float32 tensor of ``shape`` that ``codes`` and ``absmax`` (from :func:`quantize`) stand for
    (``aligned``: the tensor fills its blocks exactly)."""
    numel = 1
    for size in shape:
        numel *= size
    wide = codes.to(torch.int32)
    if codes.dtype == torch.uint8:
        root = _magnitude_value(wide, _UNSIGNED_MANTISSA, _UNSIGNED_TOP) * absmax.unsqueeze(1)
        values = root * root
    else:
        magnitude = _magnitude_value(wide.abs(), _SIGNED_MANTISSA, _SIGNED_TOP) * absmax.unsqueeze(1)
        values = torch.where(wide < 0, -magnitude, magnitude)
    return values.reshape(shape) if aligned else values.reshape(-1)[:numel].view(shape)


# ---- stochastic rounding to bfloat16 ----------------------------------------------------------------------
def _hash32(x: Tensor) -> Tensor:
    """A 32-bit integer hash of int64 values (xorshift-multiply rounds; products stay below 2⁶³)."""
    x = x & _MASK32
    x = x ^ (x >> 16)
    x = (x * 0x2C1B3C6D) & _MASK32
    x = x ^ (x >> 12)
    x = (x * 0x297A2D39) & _MASK32
    return x ^ (x >> 15)


def round_stochastic(x: Tensor, seed: Any) -> Tensor:
    """``x`` (float32) rounded to bfloat16 up or down with probability proportional to the distance.

    The 16 random bits of each element are a hash of its position and ``seed`` (a Python int, or an int64
    0-d tensor inside a compiled step), so the same call rounds the same way again."""
    flat = x.reshape(-1)
    index = torch.arange(flat.numel(), device=x.device, dtype=torch.int64)
    noise = (_hash32(index + _hash32(seed + 0x632BE5AB)) & 0xFFFF).to(torch.int32)
    bits = (flat.view(torch.int32) + noise) & -65536  # add below the kept bits, then drop them
    return bits.view(torch.float32).to(torch.bfloat16).view(x.shape)


def key_seed(key: str) -> int:
    """A stable number per state key, so each key's rounding differs and every path draws the same."""
    value = 0
    for char in key:  # plain Python, so the compiled step folds it to a constant
        value = (value * 31 + ord(char)) & 0xFFFF
    return value


def round_to(x: Tensor, dtype: torch.dtype, seed: Any) -> Tensor:
    """``x`` in the narrow float ``dtype``: stochastically rounded for bfloat16, to nearest otherwise."""
    if dtype == torch.bfloat16 and x.dtype == torch.float32:
        return round_stochastic(x, seed)
    return x.to(dtype)


# ---- what a parameter's state holds -----------------------------------------------------------------------
ABSMAX = "_absmax"


def is_quantized(state: dict[str, Any], key: str) -> bool:
    return key + ABSMAX in state


def decode(state: dict[str, Any], shape: torch.Size | tuple[int, ...], dtype: torch.dtype,
           skip: tuple[str, ...] | frozenset[str]) -> dict[str, Any]:
    """The state as the update sees it: quantised and narrow-float entries in ``dtype``, the rest as they are
    (the same objects: 0-d scalars, ``step``, the keys in ``skip``)."""
    work: dict[str, Any] = {}
    for key, value in state.items():
        if key.endswith(ABSMAX) and key[: -len(ABSMAX)] in state:
            continue
        if key in skip or not torch.is_tensor(value):
            work[key] = value
        elif is_quantized(state, key):
            work[key] = dequantize(value, state[key + ABSMAX], shape)
        elif value.is_floating_point() and value.dtype != dtype and value.shape == shape:
            work[key] = value.to(dtype)
        else:
            work[key] = value
    return work


def encode(work: dict[str, Any], state: dict[str, Any], storage: str, shape: torch.Size | tuple[int, ...],
           nonnegative: tuple[str, ...], skip: tuple[str, ...] | frozenset[str], seed: int) -> None:
    """Store the update's ``work`` state into ``state`` in ``storage`` (``"int8"`` or a narrow float's name):
    the state tensors shaped like the parameter are encoded (in place when their storage exists), the rest are
    kept as they are."""
    narrow = None if storage == "int8" else getattr(torch, storage)
    for key, value in work.items():
        stored = state.get(key)
        if key in skip or not torch.is_tensor(value) or not value.is_floating_point() or value.shape != shape:
            if stored is not value:
                state[key] = value
            continue
        if narrow is None:
            codes, absmax = quantize_in_chunks(value, nonnegative=key in nonnegative)
            if stored is not None and is_quantized(state, key):
                stored.copy_(codes)
                state[key + ABSMAX].copy_(absmax)
            else:
                state[key], state[key + ABSMAX] = codes, absmax
        else:
            rounded = round_to(value, narrow, seed * 65536 + key_seed(key))
            if stored is not None and stored is not value and stored.dtype == narrow:
                stored.copy_(rounded)
            else:
                state[key] = rounded


def storage_matches(state: dict[str, Any], storage: str, skip: tuple[str, ...] | frozenset[str]) -> bool:
    """Is a loaded state already in ``storage`` (then it is kept bit for bit, not re-encoded)?"""
    floating = [v for k, v in state.items() if k not in skip and torch.is_tensor(v) and v.is_floating_point()
                and not k.endswith(ABSMAX)]
    if storage == "int8":  # every floating state tensor is already codes (and block maxima)
        return not floating
    quantized = any(is_quantized(state, k) for k in state)
    return not quantized and all(v.dtype == getattr(torch, storage) for v in floating)


__all__ = ["BLOCK", "NARROW_FLOATS", "decode", "dequantize", "encode", "key_seed", "quantize",
           "quantize_in_chunks", "round_stochastic", "round_to", "storage_matches"]
