"""Faster, bit-identical Gaussian draws for threefry keys on CPU.

``jax.random.normal`` on a threefry key hashes a counter with Threefry-2x32 and maps the bits to a
Gaussian by the inverse error function. On CPU, JAX lowers the 20 Threefry rounds as a rolled
loop (to keep compile times low): five loop iterations that each read and write the whole counter
arrays, which makes the hash the dominant cost of the simulator. :func:`normal` evaluates the same
hash fully unrolled, so XLA fuses it with the bit-to-float mapping into one elementwise kernel
(about 1.35x faster at 128 x 500 float32), and returns exactly the numbers of
``jax.random.normal`` (same key, shape and dtype, bit for bit; ``tests/test_simulate_speedpath.py``
checks it). Keys of another PRNG implementation, the non-default ``jax_threefry_partitionable =
False`` stream, and dtypes other than float32/float64 fall back to ``jax.random.normal``.

The construction mirrors ``jax._src.random`` (partitionable ``threefry_random_bits``, ``_uniform``
on (nextafter(-1, 0), 1), ``_normal_real``) at the JAX version pinned by the project.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

__all__ = ["normal"]

_ROTATIONS = ((13, 15, 26, 6), (17, 29, 16, 24))


def _rotl(x, d: int):
    return lax.shift_left(x, np.uint32(d)) | lax.shift_right_logical(x, np.uint32(32 - d))


def _threefry2x32(k1, k2, x0, x1):
    """The Threefry-2x32 hash (20 rounds, Random123), unrolled."""
    ks = (k1, k2, k1 ^ k2 ^ np.uint32(0x1BD11BDA))
    x0 = x0 + ks[0]
    x1 = x1 + ks[1]
    for i in range(5):
        for r in _ROTATIONS[i % 2]:
            x0 = x0 + x1
            x1 = _rotl(x1, r)
            x1 = x0 ^ x1
        x0 = x0 + ks[(i + 1) % 3]
        x1 = x1 + ks[(i + 2) % 3] + np.uint32(i + 1)
    return x0, x1


def _threefry_key_data(key):
    """(k1, k2) uint32 of a threefry key (typed or raw), or None for any other key."""
    if jnp.issubdtype(key.dtype, jax.dtypes.prng_key):
        if str(jax.random.key_impl(key)) != "threefry2x32" or key.shape != ():
            return None
        kd = jax.random.key_data(key)
    else:
        if key.dtype != jnp.uint32 or key.shape != (2,) or jax.config.jax_default_prng_impl != "threefry2x32":
            return None
        kd = key
    return kd[0], kd[1]


def normal(key, shape: tuple[int, ...], dtype) -> jax.Array:
    """``jax.random.normal(key, shape, dtype)``, bit for bit, computed faster on CPU."""
    dtype = np.dtype(dtype)
    shape = tuple(int(s) for s in shape)
    size = math.prod(shape)
    kd = _threefry_key_data(key)
    if (
        kd is None
        or dtype not in (np.dtype(np.float32), np.dtype(np.float64))
        or not jax.config.jax_threefry_partitionable
        or size == 0
        or size >= 2**32
        or (dtype == np.float64 and not jax.config.jax_enable_x64)
    ):
        return jax.random.normal(key, shape, dtype)
    k1, k2 = kd
    # Partitionable threefry bits: the hash of the 64-bit element counter (hi, lo).
    counts_lo = lax.iota(np.uint32, size).reshape(shape)
    counts_hi = jnp.zeros(shape, np.uint32)
    b1, b2 = _threefry2x32(k1, k2, counts_hi, counts_lo)
    finfo = jnp.finfo(dtype)
    if dtype == np.float32:
        udt = np.dtype(np.uint32)
        bits = b1 ^ b2
    else:
        udt = np.dtype(np.uint64)
        bits = lax.shift_left(b1.astype(udt), udt.type(32)) | b2.astype(udt)
    # Uniform on [nextafter(-1, 0), 1): random mantissa with exponent 0, shifted and scaled.
    fbits = lax.shift_right_logical(bits, udt.type(finfo.bits - finfo.nmant)) | np.array(1.0, dtype).view(udt)
    floats = lax.bitcast_convert_type(fbits, dtype) - np.array(1.0, dtype)
    lo = jnp.asarray(np.nextafter(np.array(-1.0, dtype), np.array(0.0, dtype), dtype=dtype), dtype)
    hi = jnp.asarray(np.array(1.0, dtype), dtype)
    u = lax.max(lo, floats * (hi - lo) + lo)
    return lax.mul(np.array(np.sqrt(2), dtype), lax.erf_inv(u))
