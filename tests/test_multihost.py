"""Multi-host sweeps: two processes joined by ``jax.distributed`` (2 CPU devices each, gloo
collectives) run the same sweep call; the result equals the single-process sweep, and only
process 0 writes the chunk files."""

import os
import socket
import subprocess
import sys
import textwrap

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import aedyn
from aedyn import sweeps

WORKER = textwrap.dedent(
    """
    import os, sys
    os.environ["XLA_FLAGS"] = "--xla_force_host_platform_device_count=2"
    import jax
    jax.config.update("jax_cpu_collectives_implementation", "gloo")
    jax.config.update("jax_enable_x64", True)
    pid, port, out = int(sys.argv[1]), sys.argv[2], sys.argv[3]
    jax.distributed.initialize(coordinator_address=f"127.0.0.1:{port}", num_processes=2, process_id=pid)
    import numpy as np, aedyn
    from aedyn import sweeps
    assert jax.process_count() == 2 and len(jax.devices()) == 4 and len(jax.local_devices()) == 2
    cov = aedyn.spiked_covariance(jax.random.key(1), 100, [2.0, 1.0])
    ts = aedyn.log_times(20.0, 10)
    r = sweeps.sweep_theory(cov, grid=dict(lr=[0.1, 1.0, 200.0], seed=[0, 1]), ts=ts,
                            out=os.path.join(out, "theory"), chunk_size=4)
    s = sweeps.sweep_simulation(cov, grid=dict(lr=[0.1, 0.3], seed=[0, 1, 2]), ts=ts, dtype="float64",
                                out=os.path.join(out, "sgd"), chunk_size=4)
    assert r.config["devices"] == 4 and s.config["devices"] == 4
    np.savez(os.path.join(out, f"res{pid}.npz"), theory=r.pmse, sgd=s.pmse, implicit=r.status["implicit"])
    print("DONE", pid, flush=True)
    """
)


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.slow
def test_two_process_sweep_equals_single_process(tmp_path):
    port = str(_free_port())
    env = dict(os.environ, JAX_PLATFORMS="cpu")
    env.pop("XLA_FLAGS", None)
    procs = [
        subprocess.Popen([sys.executable, "-c", WORKER, str(i), port, str(tmp_path)], env=env,
                         stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        for i in range(2)
    ]
    logs = []
    for p in procs:
        try:
            logs.append(p.communicate(timeout=600)[0])
        except subprocess.TimeoutExpired:  # pragma: no cover
            for q in procs:
                q.kill()
            raise
    for p, log in zip(procs, logs):
        assert p.returncode == 0, log[-4000:]
    cov = aedyn.spiked_covariance(jax.random.key(1), 100, [2.0, 1.0])
    ts = aedyn.log_times(20.0, 10)
    r = sweeps.sweep_theory(cov, grid=dict(lr=[0.1, 1.0, 200.0], seed=[0, 1]), ts=ts)
    s = sweeps.sweep_simulation(cov, grid=dict(lr=[0.1, 0.3], seed=[0, 1, 2]), ts=ts, dtype=jnp.float64)
    assert r.status["implicit"][2].all() and not r.status["implicit"][0].any()  # lr=200 is stiff
    for i in range(2):
        with np.load(tmp_path / f"res{i}.npz") as z:
            np.testing.assert_array_equal(z["implicit"], r.status["implicit"])
            assert np.max(np.abs(z["theory"] - r.pmse)) < 1e-12
            assert np.max(np.abs(z["sgd"] - s.pmse) / s.pmse) < 1e-12
    # 6 configurations in chunks of 4: two chunk files, written by process 0 only
    names = sorted(os.listdir(tmp_path / "theory"))
    assert [n for n in names if n.startswith("chunk_")] == ["chunk_00000.npz", "chunk_00001.npz"]
    assert not [n for n in names if n.startswith(".tmp")]
