"""A finite set of real samples as the simulator's data source (docs/theory.md §9).

A :class:`Dataset` holds a pool of training samples (N, D), their empirical second moment
Omega = E[x x^T] (all D eigenpairs, computed once in float64, streamed) and, optionally, held-out
samples (M, D) on which the error of a network is measured. :func:`aedyn.simulate` accepts it in
place of a :class:`~aedyn.Covariance`; three ways of drawing the sample of each SGD step:

- ``"replacement"``: one sample of the pool per step, drawn uniformly with replacement on the
  device (the indices of block ``blk`` come from ``fold_in(key, blk)``);
- ``"one-pass"``: the pool in a random order drawn once per run from the key, each sample used at
  most once (a run has at most N steps);
- ``"gaussian"``: Gaussian samples N(0, Omega) of the same second moment (the authors' default),
  the same stream as ``simulate(net, dataset.covariance, ...)`` with the same key.

The population error recorded by the simulator is the exact pmse of docs/theory.md §2 for
N(0, Omega); with held-out samples it also records their mean loss / D (``pmse_heldout``).
A Dataset is a pytree: ``jax.jit`` and ``jax.vmap`` (over keys and learning rates, with the
dataset shared) apply to ``simulate`` with it.
"""

import hashlib

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, ArrayLike, Float, Int, PRNGKeyArray, Real
from threadpoolctl import threadpool_limits

from ._data import Covariance
from ._moments import BLOCK_ROWS, second_moment

#: How a Dataset gives the simulator one sample per step (see the module docstring).
SAMPLING = ("replacement", "one-pass", "gaussian")


def covariance_from_moment(matrix: Float[ArrayLike, "D D"]) -> Covariance:
    """The :class:`~aedyn.Covariance` (all D eigenpairs, descending) of a second-moment matrix,
    eigendecomposed in float64 (stored in float64 when JAX's x64 is on, else float32)."""
    M2 = np.asarray(matrix, np.float64)
    if M2.ndim != 2 or M2.shape[0] != M2.shape[1]:
        raise ValueError(f"matrix: expected a square D x D second moment, got shape {M2.shape}")
    if not np.all(np.isfinite(M2)):
        raise ValueError("matrix: the second moment has non-finite entries")
    # One BLAS thread: LAPACK's threaded eigensolver is 5-50x slower on a shared 2-core machine and
    # gains little at D ~ 1000 on a free one (benchmarks/RESULTS.md, "Datasets").
    with threadpool_limits(1, user_api="blas"):
        rho, U = np.linalg.eigh(0.5 * (M2 + M2.T))
    order = np.argsort(rho)[::-1]
    rho, U = np.clip(rho[order], 0.0, None), U[:, order]
    dtype = jnp.float64 if jax.config.jax_enable_x64 else jnp.float32
    return Covariance(rho.astype(dtype), U.astype(dtype), 0.0)


def empirical_covariance(X, *, center: bool = False, block: int = BLOCK_ROWS) -> Covariance:
    """The full empirical spectrum of data (N, D) (an array or an iterable of (n, D) blocks):
    :func:`second_moment` (uncentred unless ``center``) eigendecomposed in float64, as a
    :class:`~aedyn.Covariance` with all D modes explicit. ``aedyn.theory.solve`` runs with it
    unchanged (the theory with the full empirical spectrum); ``.pca_errors(K)`` gives the PCA
    errors and ``.spectrum()`` the eigenvalues."""
    return covariance_from_moment(second_moment(X, center=center, block=block))


def _fingerprint(*arrays) -> str:
    h = hashlib.sha256()
    for a in arrays:
        if a is None:
            h.update(b"none")
            continue
        a = np.ascontiguousarray(np.asarray(a))
        h.update(f"{a.dtype}{a.shape}".encode())
        h.update(memoryview(a).cast("B"))
    return h.hexdigest()[:16]


class Dataset(eqx.Module):
    """Real samples for :func:`aedyn.simulate`: a training pool, its second moment, held-out samples.

    Attributes:
        samples: (N, D) the training pool (stored in its own dtype; each drawn block is cast to
            the simulation's dtype).
        covariance: the pool's empirical second moment Omega = samples^T samples / N (all D
            eigenpairs, float64 when x64 is on): the population error and the theory use it.
        heldout: (M, D) held-out samples for the error on real data, or ``None``.
        order: (N,) the one-pass order of a run (set inside :func:`aedyn.simulate`), else ``None``.
        sampling: ``"replacement"``, ``"one-pass"`` or ``"gaussian"`` (static; module docstring).
        info: static description (name, preprocessing, sizes, fingerprint), see :attr:`config`.
    """

    samples: Float[Array, "N D"]
    covariance: Covariance
    heldout: Float[Array, "M D"] | None
    order: Int[Array, " N"] | None
    sampling: str = eqx.field(static=True)
    info: tuple = eqx.field(static=True)

    def __init__(
        self,
        samples: Float[ArrayLike, "N D"],
        covariance: Covariance,
        heldout: Float[ArrayLike, "M D"] | None = None,
        *,
        sampling: str = "replacement",
        info: tuple = (),
        order: Int[ArrayLike, " N"] | None = None,
    ):
        for name, x in (("samples", samples), ("heldout", heldout)):
            if isinstance(x, (str, bytes)):
                raise TypeError(f"{name}: expected an array of samples, got {type(x).__name__}")
        if not isinstance(covariance, Covariance):
            raise TypeError(f"covariance: expected an aedyn.Covariance, got {type(covariance).__name__}")
        self.samples = jnp.asarray(samples)
        self.covariance = covariance
        self.heldout = None if heldout is None else jnp.asarray(heldout)
        self.order = None if order is None else jnp.asarray(order)
        self.sampling = sampling
        self.info = tuple(info)

    def __check_init__(self):
        X, H = self.samples, self.heldout
        if X.ndim != 2 or X.shape[0] < 1 or X.shape[1] < 1:
            raise ValueError(f"samples: expected a (N, D) array with N, D >= 1, got shape {X.shape}")
        if not jnp.issubdtype(X.dtype, jnp.floating):
            raise TypeError(f"samples: expected floating-point samples, got {X.dtype}")
        if self.covariance.dim != X.shape[1]:
            raise ValueError(f"covariance: dimension {self.covariance.dim} does not match the samples' D = {X.shape[1]}")
        if H is not None:
            if H.ndim != 2 or H.shape[1] != X.shape[1] or H.shape[0] < 1:
                raise ValueError(f"heldout: expected held-out samples of shape (M, {X.shape[1]}), got {H.shape}")
            if not jnp.issubdtype(H.dtype, jnp.floating):
                raise TypeError(f"heldout: expected floating-point samples, got {H.dtype}")
        if not isinstance(self.sampling, str) or self.sampling not in SAMPLING:
            raise ValueError(f"sampling: expected one of {', '.join(map(repr, SAMPLING))}, got {self.sampling!r}")
        if self.order is not None and self.order.shape != (X.shape[0],):
            raise ValueError(f"order: expected a permutation of shape ({X.shape[0]},), got {self.order.shape}")

    # -- construction ------------------------------------------------------------------------
    @classmethod
    def from_samples(
        cls,
        samples: Real[ArrayLike, "N D"],
        *,
        heldout: Real[ArrayLike, "M D"] | None = None,
        sampling: str = "replacement",
        name: str = "samples",
        info: tuple = (),
        dtype=None,
    ) -> "Dataset":
        """A Dataset of concrete samples: computes their second moment (float64, streamed) and its
        eigendecomposition once. ``dtype``: storage dtype of the pool (default: the samples' own
        floating dtype, float32 for integers)."""
        arrays = {}
        for label, x in (("samples", samples), ("heldout", heldout)):
            if x is None:
                arrays[label] = None
                continue
            if isinstance(x, (str, bytes)) or isinstance(x, jax.core.Tracer):
                raise TypeError(f"{label}: expected a concrete array of samples (n, D), got {type(x).__name__}; "
                                "under a trace build the Dataset outside and pass it in")
            a = np.asarray(x)
            if a.dtype.kind not in "biuf":
                raise TypeError(f"{label}: expected real numbers, got dtype {a.dtype}")
            if a.ndim != 2 or a.shape[0] < 1 or a.shape[1] < 1:
                raise ValueError(f"{label}: expected an array of shape (n, D) with n, D >= 1, got {a.shape}")
            if not np.all(np.isfinite(a)):
                raise ValueError(f"{label}: the samples contain non-finite values")
            arrays[label] = a
        X, H = arrays["samples"], arrays["heldout"]
        if H is not None and H.shape[1] != X.shape[1]:
            raise ValueError(f"heldout: expected held-out samples of shape (M, {X.shape[1]}) like samples, got {H.shape}")
        if dtype is None:
            dtype = X.dtype if X.dtype.kind == "f" else np.float32
        if not np.issubdtype(np.dtype(dtype), np.floating):
            raise TypeError(f"dtype: expected a floating-point dtype, got {dtype}")
        if np.dtype(dtype) == np.float64 and not jax.config.jax_enable_x64:
            dtype = np.float32
        cov = covariance_from_moment(second_moment(X, name="samples"))
        Xs = X.astype(dtype, copy=False)
        Hs = None if H is None else H.astype(dtype, copy=False)
        meta = {"name": str(name), "N": int(X.shape[0]), "D": int(X.shape[1]),
                "heldout": 0 if H is None else int(H.shape[0]), "fingerprint": _fingerprint(Xs, Hs)}
        meta.update(dict(info))
        return cls(jnp.asarray(Xs), cov, None if Hs is None else jnp.asarray(Hs), sampling=sampling,
                   info=tuple(meta.items()))

    def with_sampling(self, sampling: str) -> "Dataset":
        """The same data, drawn another way: ``"replacement"``, ``"one-pass"`` or ``"gaussian"``."""
        return Dataset(self.samples, self.covariance, self.heldout, sampling=sampling, info=self.info)

    # -- properties -------------------------------------------------------------------------
    @property
    def N(self) -> int:
        """The number of training samples."""
        return self.samples.shape[0]

    @property
    def D(self) -> int:
        """The input dimension."""
        return self.samples.shape[1]

    @property
    def name(self) -> str:
        return dict(self.info).get("name", "samples")

    @property
    def config(self) -> dict:
        """The description as plain values: name, preprocessing, sizes, fingerprint, sampling."""
        out = dict(self.info)
        out.update(N=self.N, D=self.D, heldout=0 if self.heldout is None else self.heldout.shape[0],
                   sampling=self.sampling)
        return out

    def describe(self) -> str:
        c = self.config
        how = {"replacement": "drawn with replacement", "one-pass": "one pass",
               "gaussian": "Gaussian samples of their second moment"}[self.sampling]
        recipe = f", {c['recipe']} recipe" if "recipe" in c else ""
        return f"dataset {c.get('name', 'samples')}{recipe}: N={c['N']}, D={c['D']}, {how}, held-out {c['heldout']}"

    # -- what the simulator calls -----------------------------------------------------------
    def check_steps(self, n_steps: int) -> None:
        """A one-pass run has at most N steps (checked on concrete step counts)."""
        if self.sampling == "one-pass" and n_steps > self.N:
            raise ValueError(
                f"ts: a one-pass run over N = {self.N} samples has at most {self.N} steps (t <= {self.N / self.D:.4g}), "
                f"the last time asks for {n_steps}; record earlier or use sampling='replacement'"
            )

    def for_run(self, key: PRNGKeyArray, dtype) -> "Dataset":
        """The dataset as one run uses it (inside the trace): held-out samples and, for Gaussian
        sampling, the covariance cast to ``dtype`` once; the one-pass order drawn from ``key``."""
        H = None if self.heldout is None else self.heldout.astype(dtype)
        cov = self.covariance.astype(dtype) if self.sampling == "gaussian" else self.covariance
        order = None
        if self.sampling == "one-pass":
            # Blocks use fold_in(key, blk) with blk < 2^31 - 1: this key is not one of them.
            order = jax.random.permutation(jax.random.fold_in(key, 2**31 - 1), self.N).astype(jnp.int32)
        return Dataset(self.samples, cov, H, sampling=self.sampling, info=self.info, order=order)

    def draw(self, key: PRNGKeyArray, blk, size: int, dtype) -> Float[Array, "B D"]:
        """The ``size`` samples of block ``blk`` of a run with ``key`` (steps blk*size ... )."""
        if self.sampling == "gaussian":
            return self.covariance.sample(jax.random.fold_in(key, blk), size, dtype)
        if self.sampling == "one-pass":
            if self.order is None:
                raise ValueError("order: a one-pass dataset draws through Dataset.for_run(key, dtype) first")
            pos = (blk * size + jnp.arange(size, dtype=jnp.int32)) % self.N
            idx = self.order[pos]
        else:
            idx = jax.random.randint(jax.random.fold_in(key, blk), (size,), 0, self.N)
        return self.samples[idx].astype(dtype)

    def heldout_pmse(self, net) -> Float[Array, ""]:
        """Mean loss |x - xhat|^2 / (2D) of ``net`` over the held-out samples (NaN without them)."""
        if self.heldout is None:
            return jnp.full((), jnp.nan, net.W.dtype)
        H = self.heldout.astype(net.W.dtype)
        return jnp.mean(jax.vmap(net.loss)(H)) / net.D
