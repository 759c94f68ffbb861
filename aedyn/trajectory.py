"""The result of a simulation or a theory solve: pmse and overlaps on a time grid."""

from __future__ import annotations

import json
import os
import tempfile
from typing import Any

import equinox as eqx
import numpy as np
from jaxtyping import Array, Float

from .model import Overlaps

__all__ = ["Trajectory", "atomic_write"]


def atomic_write(path: str | os.PathLike, data: bytes | str) -> None:
    """Write ``data`` to ``path`` atomically (temporary file in the same folder, then rename)."""
    path = os.fspath(path)
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    mode = "wb" if isinstance(data, bytes) else "w"
    fd, tmp = tempfile.mkstemp(dir=folder, prefix=".tmp-", suffix=os.path.basename(path))
    try:
        with os.fdopen(fd, mode) as f:
            f.write(data)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


class Trajectory(eqx.Module):
    """pmse and order parameters at times ``ts`` (t = steps / D).

    Attributes:
        ts: (n,) times.
        pmse: (n,) population error (exact for Gaussian inputs).
        overlaps: :class:`~aedyn.Overlaps` with a leading time axis.
        net: the network at the last time (simulation), or ``None`` (theory).
        state: the final theory state (theory), or ``None`` (simulation).
        pca: (K + 1,) PCA errors of 0..K components, the reference levels.
        config: the configuration that produced the trajectory (plain Python values).
    """

    ts: Float[Array, " n"]
    pmse: Float[Array, " n"]
    overlaps: Overlaps
    net: Any = None
    state: Any = None
    pca: Any = None
    config: dict = eqx.field(static=True, default_factory=dict)

    def to_table(self) -> dict[str, np.ndarray]:
        """Columns t, pmse, and Q/R/T0 entries (k <= l) and PC overlaps m_W as plain arrays."""
        cols = {"t": np.asarray(self.ts), "pmse": np.asarray(self.pmse)}
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

    def save_csv(self, path) -> None:
        """Write the table (see :meth:`to_table`) as CSV, atomically, with the config as a comment."""
        cols = self.to_table()
        lines = ["# " + json.dumps(self.config, sort_keys=True, default=str), ",".join(cols)]
        rows = np.stack([np.asarray(c, np.float64) for c in cols.values()], axis=-1)
        lines += [",".join(f"{v:.10g}" for v in row) for row in rows]
        atomic_write(path, "\n".join(lines) + "\n")

    def save_json(self, path) -> None:
        """Write config, pca levels and the table as JSON, atomically."""
        payload = {
            "config": self.config,
            "pca": None if self.pca is None else np.asarray(self.pca).tolist(),
            "table": {k: np.asarray(v).tolist() for k, v in self.to_table().items()},
        }
        atomic_write(path, json.dumps(payload, indent=1, default=str))
