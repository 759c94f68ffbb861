"""Tests run with strict rank and dtype promotion, as diffrax's do."""

import jax
import pytest

jax.config.update("jax_enable_x64", True)
jax.config.update("jax_numpy_rank_promotion", "raise")
jax.config.update("jax_numpy_dtype_promotion", "strict")


@pytest.fixture
def getkey():
    """A fresh, deterministic PRNG key per call."""
    state = {"i": 0}

    def _getkey():
        state["i"] += 1
        return jax.random.key(state["i"])

    return _getkey


@pytest.fixture
def own_errors():
    """Switch jaxtyping's checker off for a test of aedyn's own input validation: users run
    without the checker, so these tests check the errors they see (the argument named, what was
    expected), not jaxtyping's."""
    import jaxtyping

    jaxtyping.config.update("jaxtyping_disable", True)
    yield
    jaxtyping.config.update("jaxtyping_disable", False)
