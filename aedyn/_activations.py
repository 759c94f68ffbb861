"""Activation functions g of the hidden units (docs/theory.md §1, §5).

An :class:`Activation` bundles g, its name, and (for linear, erf and relu) the closed-form
Gaussian kernels used by the theory. Any other elementwise function of one argument is accepted;
its derivative comes from ``jax.grad`` and its kernels from Gauss–Hermite quadrature.
"""

from collections.abc import Callable

import equinox as eqx
import jax
import jax.numpy as jnp
import jax.scipy.special as jsp

_SQRT2 = 1.4142135623730951


def _linear(x):
    return x


def _erf(x):
    # docs/theory.md §1: "erf" means erf(x / sqrt 2), so that g'(0) = sqrt(2 / pi).
    return jsp.erf(x / _SQRT2)


def _relu(x):
    return jnp.maximum(x, 0.0)


def _gelu(x):
    return x * jsp.ndtr(x)


_DERIVATIVES: dict[str, Callable] = {
    "linear": lambda x: jnp.ones_like(x),
    "erf": lambda x: jnp.sqrt(2.0 / jnp.pi) * jnp.exp(-0.5 * x * x),
    "relu": lambda x: jnp.where(x > 0, 1.0, 0.0).astype(x.dtype),
    "tanh": lambda x: 1.0 - jnp.tanh(x) ** 2,
    "sigmoid": lambda x: jax.nn.sigmoid(x) * (1.0 - jax.nn.sigmoid(x)),
    "softplus": jax.nn.sigmoid,
}

ACTIVATIONS: dict[str, Callable] = {
    "linear": _linear,
    "erf": _erf,
    "relu": _relu,
    "tanh": jnp.tanh,
    "sigmoid": jax.nn.sigmoid,
    "softplus": jax.nn.softplus,
    "gelu": _gelu,
}

#: Activations whose bias-free Gaussian kernels have closed forms (docs/theory.md §5).
CLOSED_FORM = ("linear", "erf", "relu")


class Activation(eqx.Module):
    """An elementwise activation g with its name.

    ``name`` is one of :data:`ACTIVATIONS` or ``"custom"``; ``fn`` is g itself. Both are static:
    compiled functions are cached on the function itself (two custom activations never share a
    compiled program, whatever their names).
    """

    name: str = eqx.field(static=True)
    fn: Callable = eqx.field(static=True)

    def __call__(self, x):
        return self.fn(x)

    def derivative(self, x):
        """g'(x), elementwise (closed form for named activations, autodiff otherwise)."""
        if self.name in _DERIVATIVES:
            return _DERIVATIVES[self.name](x)
        return jnp.vectorize(jax.grad(self.fn))(x)

    @property
    def closed_form(self) -> bool:
        return self.name in CLOSED_FORM


def get_activation(activation: str | Callable | Activation) -> Activation:
    """Return the :class:`Activation` for a name, a function of one argument, or an Activation."""
    if isinstance(activation, Activation):
        return activation
    if isinstance(activation, str):
        if activation not in ACTIVATIONS:
            raise ValueError(
                f"activation: unknown activation {activation!r}; expected one of "
                f"{sorted(ACTIVATIONS)} or a function of one argument"
            )
        return Activation(activation, ACTIVATIONS[activation])
    if callable(activation):
        try:
            out = jax.eval_shape(activation, jax.ShapeDtypeStruct((3,), jnp.float32))
        except Exception as err:  # noqa: BLE001 - re-raised with context
            raise ValueError(
                f"activation: the function {activation!r} could not be applied elementwise "
                f"to an array: {err}"
            ) from err
        if getattr(out, "shape", None) != (3,):
            raise ValueError(
                f"activation: the function {activation!r} must act elementwise "
                f"(shape (3,) -> (3,)), got output shape {getattr(out, 'shape', None)}"
            )
        return Activation("custom", activation)
    raise TypeError(
        f"activation: expected a name, a callable or an Activation, got {type(activation).__name__}"
    )
