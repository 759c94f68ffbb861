"""Empirical second moments of data, streamed in blocks, in float64.

Memory is O(D^2 + block * D) whatever the number of samples N: the data (an array, a memory map or
any iterable of (n_i, D) blocks) is read one block at a time, each block converted to float64 and
its outer products accumulated with one BLAS product. The second moment is the *uncentred*
Omega = E[x x^T] by default (what SGD on the data sees and what the population error of
docs/theory.md §2 uses); ``center=True`` gives the covariance E[(x - mu)(x - mu)^T] instead.
"""

from collections.abc import Iterable

import numpy as np
from jaxtyping import Float, Real

#: Rows per block of the streamed second moment (32 MiB of float64 at D = 1024).
BLOCK_ROWS = 4096


def _blocks(X, block: int, name: str):
    """float64 blocks (n_i, D) of an array-like or of an iterable of blocks; checks shape and values."""
    if isinstance(X, (str, bytes)) or X is None:
        raise TypeError(f"{name}: expected an array (N, D) or an iterable of (n, D) blocks, got {type(X).__name__}")
    if isinstance(X, (list, tuple)):
        X = np.asarray(X)
    if hasattr(X, "shape") and hasattr(X, "__getitem__"):
        if len(X.shape) != 2 or X.shape[0] < 1 or X.shape[1] < 1:
            raise ValueError(f"{name}: expected an array of shape (N, D) with N, D >= 1, got {tuple(X.shape)}")
        source = (X[i:i + block] for i in range(0, X.shape[0], block))
    elif isinstance(X, Iterable):
        source = iter(X)
    else:
        raise TypeError(f"{name}: expected an array (N, D) or an iterable of (n, D) blocks, got {type(X).__name__}")
    D = None
    for B in source:
        B = np.asarray(B)
        if B.dtype.kind not in "biuf":
            raise TypeError(f"{name}: expected real numbers, got dtype {B.dtype}")
        if B.ndim != 2 or (D is not None and B.shape[1] != D):
            raise ValueError(f"{name}: every block must have shape (n, {D or 'D'}), got {B.shape}")
        D = B.shape[1]
        B = B.astype(np.float64, copy=False)
        if not np.all(np.isfinite(B)):
            raise ValueError(f"{name}: the data contains non-finite values")
        yield B
    if D is None:
        raise ValueError(f"{name}: no data (an empty iterable of blocks)")


def moments(X, *, block: int = BLOCK_ROWS, name: str = "samples"):
    """(N, mean (D,), second moment E[x x^T] (D, D)) of data in one streamed float64 pass.

    The outer products are accumulated around the first block's mean (a shift c), so that centring
    afterwards does not cancel digits: E[x x^T] = S_c / N + c mu^T + mu c^T - c c^T.
    """
    n, c, S, s = 0, None, None, None
    for B in _blocks(X, block, name):
        if c is None:
            c = B.mean(0)
            S = np.zeros((B.shape[1], B.shape[1]))
            s = np.zeros(B.shape[1])
        Bc = B - c
        S += Bc.T @ Bc
        s += Bc.sum(0)
        n += B.shape[0]
    if n == 0:
        raise ValueError(f"{name}: no samples (N = 0)")
    d = s / n  # mu - c
    mu = c + d
    C = S / n - np.outer(d, d)  # covariance
    M2 = C + np.outer(mu, mu)
    return n, mu, 0.5 * (M2 + M2.T)


def second_moment(
    X: Real[np.ndarray, "N D"] | Iterable, *, center: bool = False, block: int = BLOCK_ROWS, name: str = "samples"
) -> Float[np.ndarray, "D D"]:
    """The empirical second moment Omega = X^T X / N in float64, streamed over blocks of ``block``
    rows (memory O(D^2) for any N); ``center=True``: the covariance (X - mean)^T (X - mean) / N.

    ``X``: an array (N, D) (NumPy, a memory map, JAX) or an iterable of (n_i, D) blocks.
    """
    if isinstance(block, bool) or not isinstance(block, (int, np.integer)) or block < 1:
        raise ValueError(f"block: expected a positive integer number of rows, got {block!r}")
    _, mu, M2 = moments(X, block=int(block), name=name)
    if center:
        M2 = M2 - np.outer(mu, mu)
        M2 = 0.5 * (M2 + M2.T)
    return M2
