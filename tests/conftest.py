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
