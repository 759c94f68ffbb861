"""Validation tools of docs/theory.md §7: the one-step Monte-Carlo check of the right-hand side."""

import jax
import numpy as np

from ._data import Covariance
from ._model import AutoEncoder
from ._checks import check_int
from ._rules import check_rule, learning_rates, sgd_step
from .theory import init_state, rhs, theory_params


def one_step_check(
    net: AutoEncoder,
    cov: Covariance,
    *,
    lr,
    key,
    n: int = 100_000,
    rule: str = "vanilla",
    weight_decay: float = 0.0,
    method: str = "gradient",
    batch: int = 5_000,
):
    """D times the mean one-step change of the factor-form state over ``n`` fresh samples, against
    the theory's right-hand side at the same state (docs/theory.md §7.1).

    Returns a dict of leaf name -> (predicted, Monte-Carlo mean, standard error), as float64
    NumPy arrays. ``net`` should be float64. The O(eta / D) second-order term is not removed.
    """
    n = check_int(n, "n", lo=2)
    batch = check_int(batch, "batch", lo=1)
    check_rule(rule, net)
    lrs = learning_rates(lr, net.W.dtype)
    s0 = init_state(net, cov)
    pred = rhs(0.0, s0, theory_params(cov, lr, weight_decay), rule=rule, method=method)
    D = net.D
    X = cov.sample(key, n, net.W.dtype)

    def change(x):
        new, _ = sgd_step(net, x, lrs, rule=rule, weight_decay=weight_decay)
        s1 = init_state(new, cov)
        return jax.tree_util.tree_map(lambda a, b: (a - b) * D, s1, s0)

    def stats(xs):
        d = jax.lax.map(change, xs, batch_size=batch)
        return jax.tree_util.tree_map(lambda a: (a.mean(0), (a**2).mean(0)), d)

    m = jax.jit(stats)(X)
    out = {}
    for name in ("wt", "vs", "M", "b", "c"):
        p = getattr(pred, name)
        if p is None:
            continue
        mean, sq = getattr(m, name)
        mean, sq = np.asarray(mean), np.asarray(sq)
        sem = np.sqrt(np.maximum(sq - mean**2, 0.0) / (n - 1))
        out[name] = (np.asarray(p), mean, sem)
    return out
