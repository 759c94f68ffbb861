"""A linear map whose transpose is written out, for reverse mode (used by the solve's two-mode
derivative and the solvers' derivative rules)."""

import jax
import jax.numpy as jnp
from jax.flatten_util import ravel_pytree


def linear_map(fn, fn_t, x, y_like):
    """``fn(x)`` for a linear ``fn`` (pytree x -> pytree shaped like ``y_like``), where reverse mode
    runs ``fn_t`` (ybar -> xbar, the transpose of ``fn``) instead of transposing ``fn``.

    ``jax.lax.custom_linear_solve`` (JAX's public primitive for a linear map with a given
    transpose) with the identity as its matrix and, on the concatenation (x, y), the map
    (x, .) -> (0, fn(x)) as its solve and (., ybar) -> (fn_t(ybar), 0) as the transposed solve."""
    flat_x, unravel_x = ravel_pytree(x)
    flat_y, unravel_y = ravel_pytree(y_like)
    n = flat_x.size
    b = jnp.concatenate([flat_x, jnp.zeros_like(flat_y)])

    def solve(_, b):
        return jnp.concatenate([jnp.zeros((n,), b.dtype), ravel_pytree(fn(unravel_x(b[:n])))[0]])

    def transpose(_, c):
        return jnp.concatenate([ravel_pytree(fn_t(unravel_y(c[n:])))[0], jnp.zeros_like(flat_y)])

    return unravel_y(jax.lax.custom_linear_solve(lambda v: v, b, solve, transpose)[n:])
