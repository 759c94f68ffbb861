"""Validation at the boundary: raise early, naming the argument and what was expected.

Checks of values run only on concrete inputs; under a JAX trace (jit, vmap, grad) the traced
arguments are checked by shape and dtype only, and failures inside a trace are reported the way
diffrax does (``throw=``, :func:`equinox.error_if`).
"""

import jax
import jax.numpy as jnp
import numpy as np


def is_concrete(*xs) -> bool:
    """True when no leaf of ``xs`` is a tracer (so its values can be checked on the host)."""
    return not any(isinstance(x, jax.core.Tracer) for x in jax.tree_util.tree_leaves(xs))


def require_x64(what: str) -> None:
    """Raise a clear error when float64 is off (the theory needs it: docs/theory.md, "Numerics")."""
    if not jax.config.jax_enable_x64:
        raise RuntimeError(
            f"{what} runs in float64, which JAX has switched off. Enable it once at the start of "
            "your program: jax.config.update('jax_enable_x64', True)"
        )


def check_times(ts, name: str = "ts") -> np.ndarray:
    """A concrete, non-empty 1-D array of finite, non-negative, strictly increasing times."""
    if not is_concrete(ts):
        raise TypeError(f"{name}: the recording times must be concrete (not traced): they fix array shapes")
    if isinstance(ts, (str, bytes)):
        raise TypeError(f"{name}: expected a 1-D array of times, got a string {ts!r}")
    try:
        t = np.asarray(ts, np.float64)
    except (TypeError, ValueError) as err:
        raise TypeError(f"{name}: expected a 1-D array of times, got {type(ts).__name__}") from err
    if t.ndim != 1 or t.size < 1:
        raise ValueError(f"{name}: expected a non-empty 1-D array of times, got shape {t.shape}")
    if not np.all(np.isfinite(t)) or np.any(t < 0):
        raise ValueError(f"{name}: times must be finite and >= 0")
    if np.any(np.diff(t) <= 0):
        raise ValueError(f"{name}: times must be strictly increasing")
    return t


def check_number(x, name: str, *, lo=None, hi=None, lo_open=False, hi_open=False):
    """A real number, or an array of them, within [lo, hi] (open ends with ``lo_open``/``hi_open``);
    returns it. A traced value is checked by nothing here (its values are unknown)."""
    if isinstance(x, jax.core.Tracer):
        return x
    if isinstance(x, (str, bytes, bool, np.bool_)) or x is None:
        raise TypeError(f"{name}: expected a number, got {type(x).__name__} {x!r}")
    try:
        a = np.asarray(x)
    except Exception as err:  # noqa: BLE001 - any non-numeric object
        raise TypeError(f"{name}: expected a number, got {type(x).__name__}") from err
    if a.dtype.kind not in "iuf":
        raise TypeError(f"{name}: expected a real number, got {type(x).__name__} {x!r}")
    v = a.astype(np.float64)
    if not np.all(np.isfinite(v)):
        raise ValueError(f"{name}: expected a finite number, got {x!r}")
    if lo is not None and np.any(v <= lo if lo_open else v < lo):
        raise ValueError(f"{name}: expected a value {'>' if lo_open else '>='} {lo}, got {x!r}")
    if hi is not None and np.any(v >= hi if hi_open else v > hi):
        raise ValueError(f"{name}: expected a value {'<' if hi_open else '<='} {hi}, got {x!r}")
    return x


def check_int(x, name: str, *, lo=None) -> int:
    """A Python or NumPy integer (not a bool) >= lo; returns it as int."""
    if isinstance(x, bool) or not isinstance(x, (int, np.integer)):
        raise TypeError(f"{name}: expected an integer, got {type(x).__name__} {x!r}")
    if lo is not None and x < lo:
        raise ValueError(f"{name}: expected an integer >= {lo}, got {x}")
    return int(x)


def check_finite(x, name: str) -> None:
    """Raise if a concrete array has non-finite entries (no-op on tracers)."""
    if x is None or not is_concrete(x):
        return
    if not bool(np.all(np.isfinite(np.asarray(x)))):
        raise ValueError(f"{name}: contains non-finite values (NaN or inf)")


def check_key(key, name: str = "key"):
    """A JAX PRNG key: typed (``jax.random.key``) or raw uint32 (``jax.random.PRNGKey``)."""
    if isinstance(key, jax.Array) or isinstance(key, jax.core.Tracer):
        if jnp.issubdtype(key.dtype, jax.dtypes.prng_key) and key.shape == ():
            return key
        if key.dtype == jnp.uint32 and key.shape == (2,):
            return jax.random.wrap_key_data(key)
    raise TypeError(
        f"{name}: expected a PRNG key such as jax.random.key(0), got {type(key).__name__} "
        f"{getattr(key, 'shape', '')}{getattr(key, 'dtype', '')}".rstrip()
    )
