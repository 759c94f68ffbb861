"""Vectorised sweeps: equality with separate runs, resumability, sharding, divergence flags."""

import os
import subprocess
import sys
import textwrap

import diffrax
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import aedyn
from aedyn import sweeps
from aedyn import theory as th

D, K = 500, 2


@pytest.fixture(scope="module")
def cov():
    return aedyn.spiked_covariance(jax.random.key(1), D, [2.0, 1.0])


TS = aedyn.log_times(10.0, 30)
TS_SGD = np.linspace(0.1, 1.0, 10)
#: Cheap to compile; the short horizon is not stiff. The acceptance test uses the default solver.
TSIT = diffrax.Tsit5()


def test_theory_sweep_equals_separate_solves(cov):
    grid = dict(lr=[0.05, 0.1, 0.2, 0.4], seed=[0, 1, 2, 3], init_scale=[0.05, 0.2], weight_decay=[0.0, 0.01])
    res = sweeps.sweep_theory(cov, K=K, grid=grid, ts=TS)
    assert res.shape == (4, 4, 2, 2) and res.axes == ("lr", "seed", "init_scale", "weight_decay")
    assert res.status["ok"].all()
    nets = {s: sweeps.initial_network(s, D, K, init_scale=1.0) for s in grid["seed"]}
    worst = 0.0
    for i, lr in enumerate(grid["lr"]):
        for j, s in enumerate(grid["seed"]):
            for k, sc in enumerate(grid["init_scale"]):
                for m, wd in enumerate(grid["weight_decay"]):
                    tr = th.solve(nets[s], cov, lr=lr, ts=TS, init_scale=sc, weight_decay=wd)
                    worst = max(worst, np.max(np.abs(np.asarray(tr.pmse) - res.pmse[i, j, k, m])))
    assert worst < 1e-10, worst
    np.testing.assert_array_equal(res.sel(lr=0.1, seed=2, init_scale=0.2, weight_decay=0.0), res.pmse[1, 2, 1, 0])


def test_theory_sweep_stiff_configurations_redone_implicitly(cov, tmp_path):
    """Default solver: the stiff configurations (lr = 300: eta t = 3000) continue with Rodas5
    inside the same vmapped solve; each equals its own theory.solve (same policy); resumable."""
    grid = dict(lr=[0.1, 300.0], seed=[0, 1])
    res = sweeps.sweep_theory(cov, K=K, grid=grid, ts=TS, out=tmp_path)
    assert res.status["ok"].all()
    np.testing.assert_array_equal(res.status["implicit"], [[False, False], [True, True]])
    assert res.config["stiff_solver"] == "Rodas5"
    assert res.config["stiff_pid"] == list(aedyn.theory.STIFF_PID)
    assert res.config["explicit_steps"] == aedyn.theory.EXPLICIT_STEPS  # what solve uses on this (reduced) state
    for i, lr in enumerate(grid["lr"]):
        for j, s in enumerate(grid["seed"]):
            tr = th.solve(sweeps.initial_network(s, D, K, init_scale=1.0), cov, lr=lr, ts=TS, init_scale=0.1)
            assert tr.config["solver"] == ("Rodas5" if lr > 1 else "Tsit5")
            assert np.max(np.abs(np.asarray(tr.pmse) - res.pmse[i, j])) < 1e-10
    assert os.path.exists(tmp_path / "chunk_00000.npz")
    again = sweeps.sweep_theory(cov, K=K, grid=grid, ts=TS, out=tmp_path,
                                callback=lambda c, n: pytest.fail("recomputed a chunk"))
    np.testing.assert_array_equal(again.pmse, res.pmse)


@pytest.mark.slow
def test_theory_sweep_rho_and_K_groups(cov):
    rho = np.asarray(cov.eigvals)
    grid = {"K": [1, 2], "rho": [rho, rho * [1.1, 0.9]]}
    res = sweeps.sweep_theory(cov, grid=grid, ts=TS, solver=TSIT)
    assert res.axes == ("K", "rho") and res.shape == (2, 2)
    cov2 = aedyn.Covariance(rho * [1.1, 0.9], cov.eigvecs, cov.bulk)
    for ik, k in enumerate([1, 2]):
        net = sweeps.initial_network(0, D, k, init_scale=0.1)
        tr = th.solve(net, cov2, lr=0.1, ts=TS, solver=TSIT)
        np.testing.assert_allclose(res.pmse[ik, 1], np.asarray(tr.pmse), rtol=0, atol=1e-10)
    table = res.to_table()
    assert {"K", "rho_0", "rho_1", "t", "pmse", "ok"} <= set(table)
    assert len(table["t"]) == 4 * len(TS)


def test_sgd_sweep_equals_separate_runs(cov):
    ts = TS_SGD
    rho = np.asarray(cov.eigvals)
    grid = dict(lr=[0.1, 0.3, 1.0, 3.0], seed=list(range(8)), rho=[rho, rho * 0.8])
    res = sweeps.sweep_simulation(cov, K=K, grid=grid, ts=ts, dtype=jnp.float64)
    assert res.pmse.shape == (4, 8, 2, 10) and not res.failed.any()
    worst = 0.0
    for i, lr in enumerate(grid["lr"]):
        for j, s in enumerate(grid["seed"]):
            for m, r in enumerate(grid["rho"]):
                c = aedyn.Covariance(r, cov.eigvecs, cov.bulk)
                net = sweeps.initial_network(s, D, K, init_scale=0.1)
                tr = aedyn.simulate(net, c, key=sweeps.seed_keys(s)[1], lr=lr, ts=ts)
                e = np.asarray(tr.pmse)
                worst = max(worst, np.max(np.abs(e - res.pmse[i, j, m]) / np.abs(e)))
    assert worst < 1e-12, worst


def test_sgd_sweep_flags_divergence(cov):
    ts = TS_SGD
    res = sweeps.sweep_simulation(cov, K=K, grid=dict(lr=[0.1, 1e4], seed=[0, 1]), ts=ts, dtype=jnp.float64)
    assert not res.status["diverged"][0].any() and res.status["diverged"][1].all()
    assert np.all(np.isfinite(res.pmse[0]))
    assert np.all(res.status["diverged_step"][1] >= 0) and np.all(res.status["diverged_step"][0] == -1)
    # NaN only after the flagged step
    nan = ~np.isfinite(res.pmse)
    assert np.all(nan <= res.status["diverged"][..., None])
    for j in range(2):
        first = np.argmax(nan[1, j])
        assert res.ts[first] * D >= res.status["diverged_step"][1, j]
    net = sweeps.initial_network(1, D, K)
    with pytest.raises(aedyn.DivergenceError) as err:
        aedyn.simulate(net, cov, key=sweeps.seed_keys(1)[1], lr=1e4, ts=ts)
    assert err.value.step == res.status["diverged_step"][1, 1]


def test_sweep_resumes_after_kill(cov, tmp_path):
    grid = dict(lr=[0.1, 0.2, 0.3, 0.4], seed=[0, 1, 2, 3])
    ts = TS
    kw = dict(K=K, ts=ts, solver=TSIT, chunk_size=4)
    full = sweeps.sweep_theory(cov, grid=grid, **kw)

    class Killed(Exception):
        pass

    def kill(c, n):
        raise Killed

    with pytest.raises(Killed):
        sweeps.sweep_theory(cov, grid=grid, out=tmp_path, callback=kill, **kw)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["chunk_00000.npz", "meta.json"]
    computed = []
    res = sweeps.sweep_theory(cov, grid=grid, out=tmp_path, callback=lambda c, n: computed.append(c), **kw)
    assert computed == [1, 2, 3]
    np.testing.assert_array_equal(res.pmse, full.pmse)
    again = []
    res2 = sweeps.sweep_theory(cov, grid=grid, out=tmp_path, callback=lambda c, n: again.append(c), **kw)
    assert again == [] and np.array_equal(res2.pmse, full.pmse)
    with pytest.raises(ValueError, match="different sweep"):
        sweeps.sweep_theory(cov, grid=dict(grid, lr=[0.1, 0.2, 0.3, 0.5]), out=tmp_path, **kw)


def test_sgd_sweep_resumes(cov, tmp_path):
    ts = TS_SGD
    grid = dict(lr=[0.1, 0.5], seed=[0, 1, 2])
    full = sweeps.sweep_simulation(cov, K=K, grid=grid, ts=ts, dtype=jnp.float64, chunk_size=2)

    def kill(c, n):
        if c == 1:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        sweeps.sweep_simulation(cov, K=K, grid=grid, ts=ts, dtype=jnp.float64, out=tmp_path, chunk_size=2,
                                callback=kill)
    computed = []
    res = sweeps.sweep_simulation(cov, K=K, grid=grid, ts=ts, dtype=jnp.float64, out=tmp_path, chunk_size=2,
                                  callback=lambda c, n: computed.append(c))
    assert computed == [2]
    np.testing.assert_array_equal(res.pmse, full.pmse)


def test_configs_list_and_csv(cov, tmp_path):
    configs = [{"lr": 0.1}, {"lr_W": 0.2, "lr_V": 0.05, "seed": 3}, {"init_scale": 0.3, "weight_decay": 0.01}]
    res = sweeps.sweep_theory(cov, K=K, configs=configs, ts=TS, solver=TSIT)
    assert res.axes == ("config",) and res.shape == (3,)
    assert res.params["lr_W"].tolist() == [0.1, 0.2, 0.1] and res.params["lr_V"].tolist() == [0.1, 0.05, 0.1]
    net = sweeps.initial_network(3, D, K, init_scale=0.1)
    tr = th.solve(net, cov, lr={"W": 0.2, "V": 0.05, "b": 0.1}, ts=TS, solver=TSIT)
    np.testing.assert_allclose(res.pmse[1], np.asarray(tr.pmse), atol=1e-10, rtol=0)
    res.save_csv(tmp_path / "s.csv")
    rows = (tmp_path / "s.csv").read_text().splitlines()
    assert rows[0].startswith("#") and len(rows) == 2 + 3 * len(TS)


def test_sweep_validation(cov):
    with pytest.raises(ValueError, match="unknown parameter"):
        sweeps.sweep_theory(cov, grid={"eta": [0.1]})
    with pytest.raises(ValueError, match="exactly one"):
        sweeps.sweep_theory(cov)
    with pytest.raises(ValueError, match="lr_W"):
        sweeps.sweep_theory(cov, grid={"lr_W": [-0.1]})
    with pytest.raises(ValueError, match="rho"):
        sweeps.sweep_theory(cov, grid={"rho": [[1.0, 2.0, 3.0]]})


SHARDED = textwrap.dedent(
    """
    import os, sys
    os.environ["XLA_FLAGS"] = "--xla_force_host_platform_device_count=8"
    import jax, jax.numpy as jnp, numpy as np
    jax.config.update("jax_enable_x64", True)
    import aedyn
    from aedyn import sweeps
    assert len(jax.devices()) == 8, jax.devices()
    cov = aedyn.spiked_covariance(jax.random.key(1), 500, [2.0, 1.0])
    ts = aedyn.log_times(10.0, 10)
    grid = dict(lr=[0.05, 0.1, 0.2], seed=[0, 1, 2, 3, 4])   # 15 configs: padded to 16
    # lr = 300 (eta t = 3000) is stiff: its second pass runs Rodas5 under shard_map
    a = sweeps.sweep_theory(cov, grid={**grid, "lr": [0.05, 0.1, 300.0]}, ts=ts)
    b = sweeps.sweep_theory(cov, grid={**grid, "lr": [0.05, 0.1, 300.0]}, ts=ts, devices=1)
    assert a.config["devices"] == 8 and b.config["devices"] == 1
    assert a.status["implicit"][2].all() and not a.status["implicit"][:2].any()
    dt = np.max(np.abs(a.pmse - b.pmse))
    tss = np.linspace(0.1, 0.5, 5)
    c = sweeps.sweep_simulation(cov, grid=grid, ts=tss, dtype=jnp.float64, chunk_size=8)
    d = sweeps.sweep_simulation(cov, grid=grid, ts=tss, dtype=jnp.float64, devices=1)
    ds = np.max(np.abs(c.pmse - d.pmse) / np.abs(d.pmse))
    print("THEORY", dt, "SGD", ds)
    assert dt < 1e-12 and ds < 1e-12
    """
)


@pytest.mark.slow
def test_sharded_on_8_cpu_devices():
    env = dict(os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=8", JAX_PLATFORMS="cpu")
    out = subprocess.run([sys.executable, "-c", SHARDED], env=env, capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "THEORY" in out.stdout
