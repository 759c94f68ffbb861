"""Tests run with strict rank and dtype promotion, as diffrax's do."""

import jax
import pytest

jax.config.update("jax_enable_x64", True)
jax.config.update("jax_numpy_rank_promotion", "raise")
jax.config.update("jax_numpy_dtype_promotion", "strict")
# The suite compiles thousands of programs in one process. A machine that points JAX's persistent
# compilation cache somewhere (JAX_COMPILATION_CACHE_DIR) would also serialise each of them to disk;
# the tests measure aedyn, not that cache, so it stays off here.
jax.config.update("jax_enable_compilation_cache", False)


@pytest.fixture(autouse=True, scope="module")
def _fresh_compilation_caches():
    """Drop the compiled programs of a test module once it is done: each module compiles its own
    (networks, covariances, rules), and keeping all of them alive grew one process to > 5 GiB and
    tens of thousands of memory mappings by the end of the suite."""
    yield
    jax.clear_caches()


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
