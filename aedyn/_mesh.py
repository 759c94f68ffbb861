"""Devices for batched work: a one-axis mesh ("batch") over them, host arrays placed on it
(sharded over the batch or replicated, also across hosts), results gathered from every host."""

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec


def devices_of(devices):
    """The devices to use: None = all (every host's, when several), an int n = the first n local
    devices, or a sequence of devices."""
    if devices is None:
        return tuple(jax.devices() if jax.process_count() > 1 else jax.local_devices())
    if isinstance(devices, (int, np.integer)) and not isinstance(devices, bool):
        if not 1 <= devices <= len(jax.local_devices()):
            raise ValueError(f"devices: {devices} requested, {len(jax.local_devices())} available")
        devices = jax.local_devices()[:devices]
    if not tuple(devices):
        raise ValueError("devices: no devices to run on")
    return tuple(devices)


def batch_mesh(devices) -> Mesh | None:
    """A one-axis mesh ("batch") over several devices; None for one device."""
    return None if len(devices) == 1 else Mesh(np.array(devices), ("batch",))


def place(tree, mesh, batched: bool):
    """Host arrays -> device arrays (sharded over the batch, or replicated)."""
    if mesh is None:
        return jax.tree_util.tree_map(jnp.asarray, tree)
    sh = NamedSharding(mesh, PartitionSpec("batch") if batched else PartitionSpec())
    return jax.tree_util.tree_map(lambda a: jax.make_array_from_callback(np.shape(a), sh, lambda i, a=a: np.asarray(a)[i]), tree)


def fetch(tree):
    """Device arrays -> NumPy arrays (gathered from every process when there are several)."""
    if jax.process_count() > 1:
        from jax.experimental import multihost_utils

        tree = multihost_utils.process_allgather(tree, tiled=True)
    return jax.tree_util.tree_map(np.asarray, tree)
