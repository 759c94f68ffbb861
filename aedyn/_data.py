"""Gaussian data models (docs/theory.md §1).

A :class:`Covariance` is Omega = U diag(rho) U^T + s (I - U U^T): N explicit eigenpairs
(rho, the columns of U) and, when N < D, an isotropic remainder of variance ``bulk`` = s on the
other D - N directions. A full spectrum is the case N = D. The spiked model
x = sum_m c_m a_m + sigma xi is the case "M spikes + isotropic bulk": sampling costs O(M D)
per sample and the theory's cost does not grow with D (docs/theory.md §6).
"""

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, ArrayLike, Float, PRNGKeyArray

from ._checks import check_int, check_key, check_number, is_concrete
from ._defaults import MERGE_RTOL
from ._moments import second_moment


class Covariance(eqx.Module):
    """A covariance Omega = U diag(eigvals) U^T + bulk (I - U U^T) of inputs in R^D.

    Attributes:
        eigvals: (N,) explicit eigenvalues rho, in descending order.
        eigvecs: (D, N) orthonormal eigenvectors, column tau is u_tau.
        bulk: () variance of each of the D - N directions orthogonal to ``eigvecs``
            (ignored when N = D).
    """

    eigvals: Float[Array, " N"]
    eigvecs: Float[Array, "D N"]
    bulk: Float[Array, ""]

    def __init__(self, eigvals: Float[ArrayLike, " N"], eigvecs: Float[ArrayLike, "D N"], bulk=0.0):
        for name, x in (("eigvals", eigvals), ("eigvecs", eigvecs), ("bulk", bulk)):
            if isinstance(x, (str, bytes)) or x is None:
                raise TypeError(f"{name}: expected an array of numbers, got {type(x).__name__}")
        eigvals = jnp.asarray(eigvals)
        eigvecs = jnp.asarray(eigvecs)
        if eigvals.ndim != 1:
            raise ValueError(f"eigvals: expected a 1-D array of eigenvalues, got shape {eigvals.shape}")
        if eigvecs.ndim != 2 or eigvecs.shape[1] != eigvals.shape[0]:
            raise ValueError(
                f"eigvecs: expected shape (D, {eigvals.shape[0]}) (one column per eigenvalue), got {eigvecs.shape}"
            )
        if eigvecs.shape[1] > eigvecs.shape[0]:
            raise ValueError(f"eigvecs: more eigenvectors ({eigvecs.shape[1]}) than dimensions ({eigvecs.shape[0]})")
        dtype = jnp.result_type(eigvals, eigvecs)
        if not jnp.issubdtype(dtype, jnp.floating):
            dtype = jnp.result_type(float)
        eigvals, eigvecs = eigvals.astype(dtype), eigvecs.astype(dtype)
        self.eigvals = eigvals
        self.eigvecs = eigvecs
        self.bulk = jnp.asarray(bulk, dtype)

    def __check_init__(self):
        if self.bulk.shape != ():
            raise ValueError(f"bulk: expected a scalar variance, got shape {self.bulk.shape}")
        if not is_concrete(self.eigvals, self.eigvecs, self.bulk):
            return
        ev = np.asarray(self.eigvals, np.float64)
        if not np.all(np.isfinite(ev)):
            raise ValueError("eigvals: eigenvalues must be finite")
        if np.any(ev < -1e-9 * max(1.0, np.abs(ev).max(initial=0))):
            raise ValueError(f"eigvals: eigenvalues must be >= 0 (a covariance is PSD), got min {ev.min():.3g}")
        up = np.nonzero(np.diff(ev) > 1e-9 * max(1.0, np.abs(ev).max(initial=0)))[0]
        if up.size:
            raise ValueError(
                f"eigvals: eigenvalues must be in descending order (eigvals[{up[0] + 1}] > eigvals[{up[0]}]); "
                "numpy.linalg.eigh returns them ascending: pass eigvals[::-1] and eigvecs[:, ::-1], or use "
                "Covariance.from_matrix(C)"
            )
        b = float(self.bulk)
        if not np.isfinite(b) or b < 0:
            raise ValueError(f"bulk: the bulk variance must be finite and >= 0, got {b}")
        U = np.asarray(self.eigvecs, np.float64)
        if not np.all(np.isfinite(U)):
            raise ValueError("eigvecs: the eigenvectors contain non-finite values")
        tol = 1e-4 if self.eigvecs.dtype == jnp.float32 else 1e-8
        err = np.abs(U.T @ U - np.eye(U.shape[1])).max(initial=0.0)
        if not err <= tol:
            raise ValueError(
                f"eigvecs: columns must be orthonormal (max |U^T U - I| = {err:.2e}); "
                "Covariance.from_matrix(C) eigendecomposes a covariance matrix"
            )

    # -- construction ------------------------------------------------------------------------
    @classmethod
    def from_matrix(cls, matrix, *, rtol: float = 1e-8) -> "Covariance":
        """Eigendecompose a symmetric positive semi-definite D x D matrix."""
        try:
            C = np.asarray(matrix, np.float64)
        except (TypeError, ValueError) as err:
            raise TypeError(f"matrix: expected a D x D array of numbers, got {type(matrix).__name__}") from err
        if C.ndim != 2 or C.shape[0] != C.shape[1]:
            raise ValueError(f"matrix: expected a square D x D covariance, got shape {C.shape}")
        if not np.all(np.isfinite(C)):
            raise ValueError("matrix: the covariance has non-finite entries")
        scale = max(np.abs(C).max(), 1e-300)
        asym = np.abs(C - C.T).max()
        if asym > rtol * scale:
            raise ValueError(f"matrix: the covariance is not symmetric (max |C - C^T| = {asym:.3e})")
        rho, U = np.linalg.eigh(0.5 * (C + C.T))
        if rho.min() < -max(rtol, 1e-12 * C.shape[0]) * max(rho.max(), 1e-300) * 10:
            raise ValueError(
                f"matrix: the covariance is not positive semi-definite (smallest eigenvalue {rho.min():.3e})"
            )
        order = np.argsort(rho)[::-1]
        dtype = jnp.asarray(matrix).dtype if jnp.issubdtype(jnp.asarray(matrix).dtype, jnp.floating) else None
        return cls(np.clip(rho[order], 0, None).astype(dtype), U[:, order].astype(dtype), 0.0)

    @classmethod
    def from_samples(cls, samples, *, center: bool = False) -> "Covariance":
        """Second-moment matrix E[x x^T] of samples (n, D) (centred first if ``center``), computed
        in float64 and streamed in blocks (``aedyn.datasets.second_moment``); stored in the samples'
        floating dtype. (``aedyn.datasets.empirical_covariance`` keeps float64.)"""
        if hasattr(samples, "shape") and hasattr(samples, "dtype"):
            X = samples
        else:
            try:
                X = np.asarray(samples, np.float64)
            except (TypeError, ValueError) as err:
                raise TypeError(f"samples: expected an (n, D) array of numbers, got {type(samples).__name__}") from err
        if np.dtype(X.dtype).kind not in "biuf":
            raise TypeError(f"samples: expected an (n, D) array of numbers, got dtype {X.dtype}")
        C = second_moment(X, center=center)
        return cls.from_matrix(C.astype(X.dtype if np.dtype(X.dtype).kind == "f" else np.float64))

    # -- properties -------------------------------------------------------------------------
    @property
    def dim(self) -> int:
        """D, the input dimension."""
        return self.eigvecs.shape[0]

    @property
    def n_modes(self) -> int:
        """N, the number of explicit eigenpairs."""
        return self.eigvecs.shape[1]

    @property
    def n_bulk(self) -> int:
        """D - N, the number of bulk directions of variance ``bulk``."""
        return self.dim - self.n_modes

    @property
    def trace(self) -> Float[Array, ""]:
        """sum_tau rho_tau = E|x|^2."""
        return jnp.sum(self.eigvals) + self.bulk * self.n_bulk

    def spectrum(self) -> Float[Array, " D"]:
        """All D eigenvalues in descending order (bulk included)."""
        full = jnp.concatenate([self.eigvals, jnp.full((self.n_bulk,), self.bulk, self.eigvals.dtype)])
        return -jnp.sort(-full)

    def pca_errors(self, K: int) -> Float[Array, " k"]:
        """pmse_PCA(k) = (1/(2D)) * (sum of all but the k largest eigenvalues), for k = 0..K: (K + 1,)."""
        K = check_int(K, "K", lo=0)
        if K > self.dim:
            raise ValueError(f"K: at most D = {self.dim} components, got {K}")
        spec = self.spectrum()
        top = jnp.concatenate([jnp.zeros((1,), spec.dtype), jnp.cumsum(spec[:K])])
        return (self.trace - top) / (2 * self.dim)

    def matrix(self) -> Float[Array, "D D"]:
        """The dense D x D matrix Omega."""
        U = self.eigvecs
        P = U @ U.T
        spikes = (U * self.eigvals[None, :]) @ U.T
        if self.n_bulk == 0:
            return spikes
        return spikes + self.bulk.astype(U.dtype) * (jnp.eye(self.dim, dtype=U.dtype) - P)

    def full(self) -> "Covariance":
        """The same covariance with all D eigenpairs explicit (the bulk basis completed by QR)."""
        if self.n_bulk == 0:
            return self
        U = np.asarray(self.eigvecs, np.float64)
        rng = np.random.default_rng(0)
        comp = rng.standard_normal((self.dim, self.n_bulk))
        comp -= U @ (U.T @ comp)
        comp, _ = np.linalg.qr(comp)
        comp -= U @ (U.T @ comp)
        comp, _ = np.linalg.qr(comp)
        rho = np.concatenate([np.asarray(self.eigvals, np.float64), np.full(self.n_bulk, float(self.bulk))])
        vecs = np.concatenate([U, comp], axis=1)
        order = np.argsort(-rho, kind="stable")
        dt = self.eigvals.dtype
        return Covariance(rho[order].astype(dt), vecs[:, order].astype(dt), 0.0)

    def merged(self, rtol: float = MERGE_RTOL) -> "Covariance":
        """The same covariance with its largest group of equal eigenvalues as the bulk (exact).

        Eigenvalues within ``rtol`` times the largest eigenvalue of each other (a run of the
        sorted spectrum) count as equal: the group's directions enter the theory only through one
        second moment (docs/theory.md §6), so ``spiked_covariance(...).full().merged()`` is the
        spikes+bulk form again. Returns ``self`` when no group of two or more is found, when the
        group does not beat the current bulk, or under a trace."""
        drop, rho_b = self._merge_plan(rtol)
        if drop is None:
            return self
        rho = np.asarray(self.eigvals, np.float64)
        dt = self.eigvals.dtype
        vecs = np.asarray(self.eigvecs)[:, ~drop]
        return Covariance(rho[~drop].astype(dt), vecs.astype(dt), np.asarray(rho_b, dt))

    def _merge_plan(self, rtol: float = MERGE_RTOL):
        """(drop, bulk): the explicit modes that :meth:`merged` moves into the bulk (a boolean mask
        (N,), computed on the host) and the bulk variance then; (None, None) where it changes nothing."""
        if not is_concrete(self.eigvals, self.bulk) or self.n_modes < 2:
            return None, None
        rho = np.asarray(self.eigvals, np.float64)
        tol = float(rtol) * max(float(np.max(np.abs(rho))), float(self.bulk), 1e-300)
        best, start = (0, 0), 0
        for i in range(1, len(rho) + 1):
            if i == len(rho) or rho[start] - rho[i] > tol:
                if i - start > best[1] - best[0]:
                    best = (start, i)
                start = i
        rho_b = float(self.bulk)
        if self.n_bulk > 0:  # only the group equal to the existing bulk can join it
            drop = np.abs(rho - rho_b) <= tol
        else:
            drop = np.zeros(len(rho), bool)
            drop[best[0]:best[1]] = best[1] - best[0] >= 2
            rho_b = float(rho[drop].mean()) if drop.any() else rho_b
        if not drop.any():
            return None, None
        return drop, rho_b

    def astype(self, dtype) -> "Covariance":
        """The same covariance in another floating-point dtype."""
        return jax.tree_util.tree_map(lambda a: a.astype(dtype), self)

    # -- sampling ---------------------------------------------------------------------------
    def sample(self, key: PRNGKeyArray, n: int | np.integer, dtype=None) -> Float[Array, "n D"]:
        """n independent samples x ~ N(0, Omega), at O(N D) cost each."""
        n = check_int(n, "n", lo=0)
        dtype = dtype or self.eigvecs.dtype
        U = self.eigvecs.astype(dtype)
        kz, kx = jax.random.split(key)
        # The non-partitionable threefry stream (a documented JAX option, fixed here so that every
        # sample of aedyn comes from one stream) draws Gaussians ~1.3x faster on CPU; generating
        # them is the simulator's largest cost (benchmarks/RESULTS.md).
        with jax.threefry_partitionable(False):
            z = jax.random.normal(kz, (n, self.n_modes), dtype)
            xi = None if self.n_bulk == 0 else jax.random.normal(kx, (n, self.dim), dtype)
        z = z * jnp.sqrt(self.eigvals).astype(dtype)[None, :]
        if self.n_bulk == 0:
            return z @ U.T
        s = jnp.sqrt(self.bulk).astype(dtype)
        if self.n_modes <= 16 and n * self.n_modes * self.dim <= 2**22:
            # xi U as a broadcast multiply-and-reduce rather than a dot: with a dot consumer, XLA
            # (CPU) splits the Gaussian generator into several kernels that each recompute the
            # hash, which makes sampling ~1.5x slower. Same values up to rounding. (Small blocks
            # only: called eagerly, the (n, N, D) product is materialised.)
            proj = jnp.sum(xi[:, None, :] * U.T[None, :, :], axis=2)
        else:
            proj = xi @ U
        return (z - s * proj) @ U.T + s * xi


def spiked_covariance(
    key: PRNGKeyArray,
    D: int | np.integer,
    strengths,
    noise: float = 1.0,
    directions: str = "gaussian",
    dtype=None,
) -> Covariance:
    """The spiked model x = sum_m c_m a_m + sigma xi, c_m ~ N(0, strengths_m^2), |a_m|^2 = D.

    ``directions``: "gaussian" draws a_m with i.i.d. N(0, 1) entries (rescaled to |a_m|^2 = D);
    "sinusoidal" uses the orthogonal sine modes a_m(i) ~ sin(pi m i / (D + 1)). ``noise`` is sigma.
    The covariance has M spike eigenvalues ~ D strengths^2 + sigma^2 and a bulk sigma^2.
    """
    key = check_key(key)
    D = check_int(D, "D", lo=1)
    try:
        strengths = np.atleast_1d(np.asarray(strengths, np.float64))
    except (TypeError, ValueError) as err:
        raise TypeError(f"strengths: expected a 1-D sequence of spike strengths, got {strengths!r}") from err
    if strengths.ndim != 1 or strengths.size < 1:
        raise ValueError(f"strengths: expected a 1-D sequence of spike strengths, got {strengths!r}")
    if not np.all(np.isfinite(strengths)) or np.any(strengths < 0):
        raise ValueError(f"strengths: spike strengths must be finite and >= 0, got {strengths.tolist()}")
    M = strengths.size
    if M > D:
        raise ValueError(f"strengths: {M} spikes do not fit in D = {D} dimensions")
    noise = float(check_number(noise, "noise", lo=0.0))
    if directions == "gaussian":
        A = np.array(jax.random.normal(key, (M, D), jnp.float64 if jax.config.jax_enable_x64 else jnp.float32), np.float64)
    elif directions == "sinusoidal":
        i = np.arange(1, D + 1)
        A = np.sin(np.pi * np.arange(1, M + 1)[:, None] * i[None, :] / (D + 1))
    else:
        raise ValueError(f"directions: expected 'gaussian' or 'sinusoidal', got {directions!r}")
    A *= np.sqrt(D) / np.linalg.norm(A, axis=1, keepdims=True)
    # Omega = A^T diag(strengths^2) A + sigma^2 I; with A^T = Qr Rr the spike part is
    # Qr (Rr diag(s^2) Rr^T) Qr^T, an M x M eigenproblem.
    Qr, Rr = np.linalg.qr(A.T)
    lam, E = np.linalg.eigh((Rr * strengths**2) @ Rr.T)
    order = np.argsort(lam)[::-1]
    rho = lam[order] + noise**2
    U = Qr @ E[:, order]
    dtype = dtype or (jnp.float64 if jax.config.jax_enable_x64 else jnp.float32)
    return Covariance(rho.astype(dtype), U.astype(dtype), noise**2)
