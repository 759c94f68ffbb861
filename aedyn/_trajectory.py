"""The result of a simulation or a theory solve: pmse and overlaps on a time grid."""

import json
from typing import Any

import equinox as eqx
import jax
import numpy as np
from jaxtyping import Array, Float

from ._checks import is_concrete
from ._io import atomic_write
from ._model import Overlaps


def _plain(x):
    a = np.asarray(x)
    return a.item() if a.ndim == 0 else a.tolist()


class Trajectory(eqx.Module):
    """pmse and order parameters at times ``ts`` (t = steps / D); a pytree, so a ``vmap``-ed
    simulation or solve returns one with leading batch axes.

    Attributes:
        ts: (n,) times.
        pmse: (n,) population error (exact for Gaussian inputs).
        overlaps: :class:`~aedyn.Overlaps` with a leading time axis.
        net: the network at the last time (simulation), or ``None`` (theory).
        state: the final theory state (theory), or ``None`` (simulation).
        pca: (K + 1,) PCA errors of 0..K components, the reference levels.
        params: the numbers that made the run, as arrays: learning rates ``lr_W``, ``lr_V``,
            ``lr_b``, ``lr_c``, ``weight_decay``, and ``init_scale`` (theory) or the PRNG ``key`` (simulation).
        stats: arrays about the run. Theory: ``num_steps``, ``successful``, ``max_steps_reached``,
            ``implicit`` (the stiff remainder ran implicitly). Simulation: ``steps`` done and
            ``diverged_step`` (-1 when the run did not diverge).
        info: static settings (D, K, activation, rule, solver, ...), see :attr:`config`.
        pmse_heldout: (n,) mean loss / D on the held-out samples of a :class:`~aedyn.Dataset`
            (a simulation on real data), else ``None``.
    """

    ts: Float[Array, "*batch n"]
    pmse: Float[Array, "*batch n"]
    overlaps: Overlaps
    net: Any = None
    state: Any = None
    pca: Float[Array, "*batch k"] | None = None
    params: dict = eqx.field(default_factory=dict)
    stats: dict = eqx.field(default_factory=dict)
    info: tuple = eqx.field(static=True, default=())
    pmse_heldout: Float[Array, "*batch n"] | None = None

    @property
    def config(self) -> dict:
        """The configuration as plain Python values: the static settings, plus (outside a trace)
        ``lr`` ({"W", "V", "b", "c"}), ``weight_decay``, ``init_scale`` or ``key``, and the stats."""
        out = dict(self.info)
        if not is_concrete(self.params, self.stats):
            return out
        p = {k: _plain(v) for k, v in self.params.items()}
        if "lr_W" in p:
            out["lr"] = {"W": p.pop("lr_W"), "V": p.pop("lr_V"), "b": p.pop("lr_b")}
            lr_c = p.pop("lr_c", None)
            if out.get("output_bias"):
                out["lr"]["c"] = lr_c
        out.update(p)
        st = {k: _plain(v) for k, v in self.stats.items()}
        out.update(st)
        if out.get("kind") == "theory" and not isinstance(st.get("implicit"), list) and st.get("implicit"):
            out["solver"] = out.get("stiff_solver")
            out["solver_note"] = (f"stiff: the explicit phase reached {out['explicit_steps']} steps; the rest was "
                                  f"solved with {out['stiff_solver']}")
        d = st.get("diverged_step")
        if isinstance(d, int) and d >= 0:
            out["diverged_at"] = {"step": d, "t": d / out["D"]}
        return out

    def to_table(self) -> dict[str, np.ndarray]:
        """Columns t, pmse, and Q/R/T0 entries (k <= l) and PC overlaps m_W as plain arrays."""
        cols = {"t": np.asarray(self.ts), "pmse": np.asarray(self.pmse)}
        if self.pmse_heldout is not None:
            cols["pmse_heldout"] = np.asarray(self.pmse_heldout)
        ov = self.overlaps
        K = ov.Q.shape[-1]
        for name in ("Q", "R", "T0"):
            M = np.asarray(getattr(ov, name))
            for k in range(K):
                for l in range(K):
                    if name == "R" or l >= k:
                        cols[f"{name}_{k}{l}"] = M[..., k, l]
        mW = np.asarray(ov.m_W)
        for k in range(mW.shape[-2]):
            for j in range(mW.shape[-1]):
                cols[f"mW_{k}{j}"] = mW[..., k, j]
        return cols

    def _check_single(self, what):
        if np.ndim(self.ts) != 1:
            raise ValueError(f"{what}: a batched trajectory (ts of shape {np.shape(self.ts)}); index one run first")

    def save_csv(self, path) -> None:
        """Write the table (see :meth:`to_table`) as CSV, atomically, with the config as a comment."""
        self._check_single("save_csv")
        cols = self.to_table()
        lines = ["# " + json.dumps(self.config, sort_keys=True, default=str), ",".join(cols)]
        rows = np.stack([np.asarray(c, np.float64) for c in cols.values()], axis=-1)
        lines += [",".join(f"{v:.10g}" for v in row) for row in rows]
        atomic_write(path, "\n".join(lines) + "\n")

    def save_json(self, path) -> None:
        """Write config, pca levels and the table as JSON, atomically."""
        self._check_single("save_json")
        payload = {
            "config": self.config,
            "pca": None if self.pca is None else np.asarray(self.pca).tolist(),
            "table": {k: np.asarray(v).tolist() for k, v in self.to_table().items()},
        }
        atomic_write(path, json.dumps(payload, indent=1, default=str))


def key_data(key) -> Array:
    """The raw uint32 data of a PRNG key (typed or raw), for :attr:`Trajectory.params`."""
    return jax.random.key_data(key) if jax.dtypes.issubdtype(key.dtype, jax.dtypes.prng_key) else key
