"""Workarounds for upstream issues, each applied only where it is needed, each with its issue."""

import jax
import jax.numpy as jnp


def lineax_shard_map_compat() -> None:
    """lineax 0.1.x under ``shard_map`` (jax >= 0.7) compares the structure of a vector with the
    operator's by ``eqx.tree_equal`` of ShapeDtypeStructs *including their sharding*; inside
    ``shard_map`` one side carries the manual mesh and the other does not, and every implicit
    solve (Kvaerno5's Newton step) fails with "pytree does not match out_structure". Compare
    shapes and dtypes only (what the check is for). Idempotent; called by ``theory.solve`` before
an implicit solve is traced (a user may put it under ``shard_map``).
    Upstream: patrick-kidger/lineax#185 ("Issue with shard_map"); remove once a lineax release
    fixes it. (The default policy's implicit phase, Rodas5, uses no lineax solve; this matters
    for an implicit diffrax solver the user passes.)"""
    try:
        import lineax._misc as lm
    except ImportError:  # pragma: no cover
        return
    if getattr(lm, "_aedyn_patched", False):
        return

    def structure_equal(x, y) -> bool:
        def key(t):
            s = jax.tree_util.tree_map(lambda a: (tuple(a.shape), jnp.dtype(a.dtype)), jax.eval_shape(lambda: t))
            return jax.tree_util.tree_structure(s), jax.tree_util.tree_leaves(s)

        return key(x) == key(y)

    lm.structure_equal = structure_equal
    try:
        import lineax._solver.misc as lsm

        lsm.structure_equal = structure_equal
    except ImportError:  # pragma: no cover
        pass
    lm._aedyn_patched = True
