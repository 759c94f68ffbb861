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


# Seconds each test module takes in one worker on the 2-core machine (the table the suite prints at
# its end, "seconds per test module"; modules not listed count as short). The README's test command runs two
# pytest-xdist workers, one module each at a time (--dist loadfile), in this order
# (--no-loadscope-reorder): longest first, so neither worker is left alone with a long module at
# the end while the other idles.
MODULE_SECONDS = {
    "test_transforms.py": 384, "test_notebooks.py": 305, "test_stiff.py": 267, "test_theory_slow.py": 238,
    "test_fit.py": 194, "test_merge.py": 190, "test_extensions_slow.py": 171, "test_theory.py": 152,
    "test_figures.py": 133, "test_datasets_slow.py": 124, "test_sweeps.py": 91,
    "test_output_bias_slow.py": 80, "test_output_bias.py": 68, "test_extensions.py": 58, "test_cli.py": 37,
    "test_multihost.py": 32, "test_datasets.py": 26, "test_simulate_speedpath.py": 23,
    "test_finite_size.py": 23, "test_model.py": 21, "test_simulate.py": 21, "test_cli_universality.py": 11,
}


def pytest_collection_modifyitems(config, items):
    items.sort(key=lambda item: -MODULE_SECONDS.get(item.path.name, 0))  # stable: order within a module kept


_module_seconds: dict[str, float] = {}


def pytest_runtest_logreport(report):
    name = report.nodeid.split("::")[0].rsplit("/", 1)[-1]
    _module_seconds[name] = _module_seconds.get(name, 0.0) + report.duration


def pytest_terminal_summary(terminalreporter):
    """Seconds per test module (set up, call and tear down; the table above is refreshed from these)."""
    if len(_module_seconds) > 1:
        terminalreporter.write_sep("=", "seconds per test module")
        for name, s in sorted(_module_seconds.items(), key=lambda kv: -kv[1]):
            terminalreporter.write_line(f"{s:8.1f}  {name}")
