"""Online SGD steps: vanilla, truncated and Sanger rules (docs/theory.md §1).

Single-example, pure functions: ``sgd_step(net, x, lr)`` returns the network after one step on x.
Scalings (fixed conventions), with Delta = x - xhat and e_k = v^k . Delta:

    v^k <- v^k + (eta_V / D)   g(lambda^k) Delta
    w^k <- w^k + (eta_W / D^2) e_k g'(lambda^k) x / sqrt(D)
    b^k <- b^k + (eta_b / D^2) e_k g'(lambda^k)
    c   <- c   + (eta_c / D)   Delta          (output bias: xhat = sum_k v^k g(lambda^k) + c)

Tied (decoder sqrt(D) w^k): w^k <- w^k - (eta_W / D^2) dl/dw^k, through both uses of w^k.
Truncated: unit k uses Delta_k = x - c - sum_{a<=k} v^a g(lambda^a); c follows the full Delta_K. Sanger (tied networks): the
generalised Hebbian rule w^k <- w^k + (eta_W / D^2) sqrt(D) g(lambda^k) Delta_k.
Weight decay kappa multiplies the old weights by (1 - kappa / D) each step (-kappa w per unit t).
"""

from collections.abc import Mapping

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, ArrayLike, Float, Real

from ._checks import check_number, is_concrete
from ._model import AutoEncoder

RULES = ("vanilla", "truncated", "sanger")

#: A number (or a scalar array, traced or not).
Scalar = Real[ArrayLike, ""]


class LearningRates(eqx.Module):
    """Learning rates eta_W, eta_V, eta_b, eta_c (scalars; leading batch axes in sweeps)."""

    W: Real[Array, "*batch"]
    V: Real[Array, "*batch"]
    b: Real[Array, "*batch"]
    c: Real[Array, "*batch"]


#: What every ``lr`` argument accepts: one rate for all weights, a mapping with keys "W", "V", "b", "c", or
#: a :class:`LearningRates`.
LearningRatesLike = Scalar | Mapping[str, Scalar] | LearningRates


def _rate(x, name):
    check_number(x, name)
    a = jnp.asarray(x)
    if a.ndim != 0:
        raise ValueError(f"{name}: expected a number, got an array of shape {a.shape}")
    if not (jnp.issubdtype(a.dtype, jnp.floating) or jnp.issubdtype(a.dtype, jnp.integer)):
        raise TypeError(f"{name}: expected a real number, got dtype {a.dtype}")
    return a


def learning_rates(lr: LearningRatesLike, dtype=None) -> LearningRates:
    """Normalise ``lr``: a number (or scalar array) for all weights, a mapping with keys "W", "V",
    "b", "c" (missing keys take eta_W, or the first rate given), or a :class:`LearningRates`.
    Concrete values must be finite and >= 0."""
    if isinstance(lr, LearningRates):
        out = lr
    elif isinstance(lr, Mapping):
        unknown = set(lr) - {"W", "V", "b", "c"}
        if unknown:
            raise ValueError(f"lr: unknown keys {sorted(unknown)}; expected a subset of 'W', 'V', 'b', 'c'")
        if not lr:
            raise ValueError("lr: the mapping of learning rates is empty")
        rates = {k: _rate(v, f"lr['{k}']") for k, v in lr.items()}
        default = rates.get("W", next(iter(rates.values())))
        out = LearningRates(default, rates.get("V", default), rates.get("b", default), rates.get("c", default))
    else:
        a = _rate(lr, "lr")
        out = LearningRates(a, a, a, a)
    if dtype is not None:
        out = jax.tree_util.tree_map(lambda x: jnp.asarray(x, dtype), out)
    for name, x in (("W", out.W), ("V", out.V), ("b", out.b), ("c", out.c)):
        if is_concrete(x):
            v = np.asarray(x)
            if not np.all(np.isfinite(v)) or np.any(v < 0):
                raise ValueError(f"lr: learning rate eta_{name} must be finite and >= 0, got {v}")
    return out


def check_rule(rule: str, net: AutoEncoder) -> None:
    if not isinstance(rule, str) or rule not in RULES:
        raise ValueError(f"rule: unknown rule {rule!r}; expected one of {RULES}")
    if rule == "sanger" and not net.tied:
        raise ValueError("rule: Sanger's rule is defined for tied networks; pass a network with tied=True")


def check_weight_decay(weight_decay, D: int):
    """kappa >= 0 and below D (each step multiplies the weights by 1 - kappa / D > 0)."""
    check_number(weight_decay, "weight_decay", lo=0.0)
    if is_concrete(weight_decay) and float(np.max(np.asarray(weight_decay))) >= D:
        raise ValueError(
            f"weight_decay: kappa = {float(np.max(np.asarray(weight_decay)))} must be below D = {D}: "
            "each step multiplies the weights by 1 - kappa / D"
        )
    return weight_decay


def sgd_step(
    net: AutoEncoder,
    x: Float[ArrayLike, " D"],
    lr: LearningRatesLike,
    *,
    rule: str = "vanilla",
    weight_decay: Scalar = 0.0,
) -> tuple[AutoEncoder, Float[Array, ""]]:
    """One online SGD step on the sample x (D,). Returns (new network, per-sample loss l).

    ``lr``: a number, a scalar array or a mapping with keys "W", "V", "b", "c" (see
    :func:`learning_rates`); pure, so ``jax.vmap`` over any of them works.
    """
    if not isinstance(net, AutoEncoder):
        raise TypeError(f"net: expected an AutoEncoder, got {type(net).__name__}")
    check_rule(rule, net)
    if jnp.shape(x) != (net.D,):
        raise ValueError(f"x: expected one sample of shape ({net.D},), got {jnp.shape(x)}")
    check_weight_decay(weight_decay, net.D)
    lr = learning_rates(lr)
    D = net.D
    dt = net.W.dtype
    sqD = jnp.sqrt(jnp.asarray(D, dt))
    W, b, c = net.W, net.b, net.c
    dec = net.decoder
    target = x if c is None else x - c  # what the units reconstruct
    lam = W @ x / sqD
    if b is not None:
        lam = lam + b
    h = net.activation(lam)
    gp = net.activation.derivative(lam)
    if rule == "vanilla":
        delta = target - h @ dec  # (D,)
        # e_k = v^k . Delta and |Delta|^2 in one matrix-vector product (fewer kernels per step).
        r = jnp.concatenate([dec, delta[None, :]], axis=0) @ delta
        err = r[:-1]
        hebb = h[:, None] * delta[None, :]  # g(lambda^k) Delta_k
        loss = 0.5 * r[-1]
    else:
        # Delta_k = x - sum_{a<=k} v^a g(lambda^a): a cumulative sum over units.
        deltas = target[None, :] - jnp.cumsum(h[:, None] * dec, axis=0)  # (K, D)
        delta = deltas[-1]
        err = jnp.sum(dec * deltas, axis=1)
        hebb = h[:, None] * deltas
        loss = 0.5 * jnp.dot(deltas[-1], deltas[-1])
    decay = 1 - jnp.asarray(weight_decay, dt) / D
    slope_err = err * gp  # e_k g'(lambda^k)
    if net.tied:
        dW = sqD * hebb
        if rule != "sanger":
            dW = dW + slope_err[:, None] * x[None, :] / sqD
        W_new = decay * W + (lr.W.astype(dt) / D**2) * dW
        V_new = None
    else:
        W_new = decay * W + (lr.W.astype(dt) / D**2) * slope_err[:, None] * x[None, :] / sqD
        V_new = decay * net.V + (lr.V.astype(dt) / D) * hebb
    b_new = None if b is None else b + (lr.b.astype(dt) / D**2) * slope_err
    c_new = None if c is None else c + (lr.c.astype(dt) / D) * delta
    # Same structure as ``net`` (no re-validation: a diverging step returns NaNs, jit or not).
    new = [x for x in (W_new, V_new, b_new, c_new) if x is not None]
    return jax.tree_util.tree_unflatten(jax.tree_util.tree_structure(net), new), loss
