"""The online SGD simulator: reproducibility, recording, checkpoints, divergence, bad input."""

from __future__ import annotations

import importlib
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import aedyn

simulate_module = importlib.import_module("aedyn._simulate")  # the module (aedyn.simulate is the function)

D, K = 50, 2
TS = np.array([0.1, 0.5, 1.0, 2.0])


@pytest.fixture(scope="module")
def setup():
    cov = aedyn.spiked_covariance(jax.random.key(0), D, (3.0, 5.0))
    net = aedyn.init_autoencoder(jax.random.key(1), D, K, scale=0.1, dtype=jnp.float64)
    return cov, net


def _sim(net, data, seed=2, **kw):
    kw.setdefault("lr", 0.1)
    kw.setdefault("ts", TS)
    return aedyn.simulate(net, data, key=jax.random.key(seed), **kw)


def test_same_seed_bit_identical_different_seed_differs(setup):
    cov, net = setup
    a = _sim(net, cov, seed=2)
    b = _sim(net, cov, seed=2)
    c = _sim(net, cov, seed=3)
    assert np.array_equal(np.asarray(a.pmse), np.asarray(b.pmse))
    assert np.array_equal(np.asarray(a.net.W), np.asarray(b.net.W))
    assert np.array_equal(np.asarray(a.net.V), np.asarray(b.net.V))
    assert np.array_equal(np.asarray(a.overlaps.Q), np.asarray(b.overlaps.Q))
    assert not np.array_equal(np.asarray(a.net.W), np.asarray(c.net.W))
    assert not np.array_equal(np.asarray(a.pmse), np.asarray(c.pmse))


def test_trajectory_contents(setup):
    cov, net = setup
    tr = _sim(net, cov)
    np.testing.assert_allclose(np.asarray(tr.ts), TS)
    assert tr.pmse.shape == (4,) and tr.pmse.dtype == jnp.float64 and tr.net.W.dtype == jnp.float64
    assert tr.overlaps.Q.shape == (4, K, K) and tr.overlaps.m_W.shape == (4, K, K)
    # The recorded pmse is the exact pmse of the network at that time: check the last one.
    np.testing.assert_allclose(float(tr.pmse[-1]), float(aedyn.pmse(tr.net, cov)), rtol=1e-12)
    ov = aedyn.overlaps(tr.net, cov)
    np.testing.assert_allclose(np.asarray(tr.overlaps.Q[-1]), np.asarray(ov.Q), rtol=1e-12)
    # Training from scale 0.1 reduces the error below its initial value tr(Omega)/(2D) ~ 18 within t = 2.
    start = float(aedyn.pmse(net, cov))
    assert np.all(np.isfinite(np.asarray(tr.pmse)))
    assert float(tr.pmse[-1]) < start
    np.testing.assert_allclose(np.asarray(tr.pca), np.asarray(cov.pca_errors(K)))
    assert tr.config["rule"] == "vanilla" and tr.config["D"] == D and tr.config["lr"]["W"] == 0.1


def test_recording_grid_does_not_change_data_stream(setup):
    """Steps depend only on (key, step): recording at more times gives the same network."""
    cov, net = setup
    a = _sim(net, cov, ts=[2.0])
    b = _sim(net, cov, ts=TS)
    assert np.array_equal(np.asarray(a.net.W), np.asarray(b.net.W))
    assert float(a.pmse[-1]) == float(b.pmse[-1])


def test_matches_manual_steps(setup):
    """simulate == a Python loop of sgd_step over the same samples (block structure of the stream)."""
    cov, net = setup
    block = 16
    n = 40  # steps: t = 0.8
    tr = _sim(net, cov, ts=[n / D], block=block, lr={"W": 0.3, "V": 0.2, "b": 0.1}, weight_decay=0.5)
    key = jax.random.key(2)
    lr = aedyn.learning_rates({"W": 0.3, "V": 0.2, "b": 0.1}, jnp.float64)
    step = jax.jit(lambda net, x: aedyn.sgd_step(net, x, lr, weight_decay=0.5)[0])
    blocks = [cov.sample(jax.random.fold_in(key, i), block, jnp.float64) for i in range(-(-n // block))]
    cur = net
    for s in range(n):
        cur = step(cur, blocks[s // block][s % block])
    np.testing.assert_allclose(np.asarray(tr.net.W), np.asarray(cur.W), rtol=1e-10, atol=1e-13)
    np.testing.assert_allclose(np.asarray(tr.net.V), np.asarray(cur.V), rtol=1e-10, atol=1e-13)


def test_float32_and_samples_data(setup):
    cov, _ = setup
    net32 = aedyn.init_autoencoder(jax.random.key(1), D, K, scale=0.1, dtype=jnp.float32)
    tr = _sim(net32, cov)
    assert tr.pmse.dtype == jnp.float32 and tr.net.W.dtype == jnp.float32
    assert np.all(np.isfinite(np.asarray(tr.pmse)))
    X = cov.sample(jax.random.key(4), 500)
    net = aedyn.init_autoencoder(jax.random.key(1), D, K, scale=0.1, dtype=jnp.float64)
    tr2 = _sim(net, X, ts=[0.5, 1.0], rule="truncated")
    assert tr2.config["data"].startswith("samples")
    assert np.all(np.isfinite(np.asarray(tr2.pmse)))


def test_tied_sanger_and_bias_run(setup):
    cov, _ = setup
    tied = aedyn.init_autoencoder(jax.random.key(1), D, K, activation="linear", tied=True, scale=0.5, dtype=jnp.float64)
    tr = _sim(tied, cov, rule="sanger", ts=[1.0, 2.0], lr=0.5)
    assert tr.net.tied and tr.net.V is None
    assert float(tr.pmse[-1]) < float(aedyn.pmse(tied, cov))
    biased = aedyn.init_autoencoder(jax.random.key(1), D, K, bias=0.1, dtype=jnp.float64)
    tr = _sim(biased, cov, ts=[1.0])
    assert tr.net.b is not None and not np.array_equal(np.asarray(tr.net.b), np.asarray(biased.b))


def test_divergence_raises_with_step_and_stop_returns_nan(setup):
    cov, net = setup
    big = aedyn.init_autoencoder(jax.random.key(1), D, K, scale=1.0, activation="linear", dtype=jnp.float64)
    with pytest.raises(aedyn.DivergenceError, match="diverged at step") as info:
        _sim(big, cov, lr=1e4, ts=TS)
    err = info.value
    assert isinstance(err.step, int) and 0 <= err.step < TS[-1] * D
    assert err.t == pytest.approx(err.step / D)
    tr = _sim(big, cov, lr=1e4, ts=TS, on_divergence="stop")
    step = tr.config["diverged_at"]["step"]
    assert step == err.step
    pm = np.asarray(tr.pmse)
    after = np.asarray(tr.ts) * D > step
    assert np.all(np.isnan(pm[after])) and after.any()
    assert np.all(np.isfinite(pm[~after]))


def test_checkpoint_resume_identical(setup, tmp_path, monkeypatch):
    cov, net = setup
    ts = np.linspace(0.1, 2.0, 20)  # 20 records = 3 chunks of 8
    ref = _sim(net, cov, ts=ts)
    path = tmp_path / "run.npz"
    # A run that is interrupted after its first chunk has been checkpointed...
    original = simulate_module._save_checkpoint
    calls = {"n": 0}

    def crash_after_first(*args, **kwargs):
        original(*args, **kwargs)
        calls["n"] += 1
        if calls["n"] == 1:
            raise KeyboardInterrupt("simulated crash")

    monkeypatch.setattr(simulate_module, "_save_checkpoint", crash_after_first)
    with pytest.raises(KeyboardInterrupt):
        _sim(net, cov, ts=ts, checkpoint=path)
    assert path.exists()
    # ... resumes from the file and reproduces the uninterrupted run bit for bit.
    resumed = _sim(net, cov, ts=ts, checkpoint=path)
    assert calls["n"] == 3  # 1 before the crash + 2 remaining chunks
    assert np.array_equal(np.asarray(resumed.pmse), np.asarray(ref.pmse))
    assert np.array_equal(np.asarray(resumed.net.W), np.asarray(ref.net.W))
    assert np.array_equal(np.asarray(resumed.overlaps.R), np.asarray(ref.overlaps.R))
    # A completed checkpoint returns the same result again.
    again = _sim(net, cov, ts=ts, checkpoint=path)
    assert np.array_equal(np.asarray(again.pmse), np.asarray(ref.pmse))
    # A different configuration must not silently reuse the file.
    with pytest.raises(ValueError, match="checkpoint"):
        _sim(net, cov, ts=ts, checkpoint=path, lr=0.2)
    with pytest.raises(ValueError, match="checkpoint"):
        _sim(net, cov, ts=ts[:-1], checkpoint=path)
    bad = tmp_path / "garbage.npz"
    bad.write_bytes(b"not a checkpoint")
    with pytest.raises(ValueError, match="checkpoint"):
        _sim(net, cov, ts=ts, checkpoint=bad)


def test_progress_bar(setup, capsys):
    cov, net = setup
    tr = _sim(net, cov, ts=[0.5, 1.0], progress=True)
    assert np.all(np.isfinite(np.asarray(tr.pmse)))
    assert "SGD" in capsys.readouterr().err


# -- bad input --------------------------------------------------------------------------------------


@pytest.mark.usefixtures("own_errors")
def test_simulate_rejects_bad_input(setup):
    cov, net = setup
    with pytest.raises(ValueError, match="lr"):
        _sim(net, cov, lr=-0.1)
    with pytest.raises(ValueError, match="lr"):
        _sim(net, cov, lr={"W": 0.1, "V": -1.0})
    with pytest.raises(ValueError, match="ts"):
        _sim(net, cov, ts=[1.0, 0.5])
    with pytest.raises(ValueError, match="ts"):
        _sim(net, cov, ts=[0.5, 0.5])
    with pytest.raises(ValueError, match="ts"):
        _sim(net, cov, ts=[-1.0, 0.5])
    with pytest.raises(ValueError, match="ts"):
        _sim(net, cov, ts=[[0.1, 0.2]])
    with pytest.raises(ValueError, match="rule"):
        _sim(net, cov, rule="oja")
    with pytest.raises(ValueError, match="data"):
        _sim(net, aedyn.spiked_covariance(jax.random.key(0), D + 1, (1.0,)))
    with pytest.raises(ValueError, match="data"):
        _sim(net, jnp.zeros((10, D + 1)))
    with pytest.raises(ValueError, match="data"):
        _sim(net, jnp.full((10, D), jnp.nan))
    with pytest.raises(ValueError, match="weight_decay"):
        _sim(net, cov, weight_decay=-1.0)
    with pytest.raises(ValueError, match="on_divergence"):
        _sim(net, cov, on_divergence="ignore")
    with pytest.raises(TypeError, match="net"):
        aedyn.simulate("net", cov, key=jax.random.key(0), lr=0.1, ts=TS)


K_ = jax.random.key
D_ = 40
COV_ = aedyn.spiked_covariance(K_(0), D_, (3.0, 5.0))
NET_ = aedyn.init_autoencoder(K_(1), D_, 2, dtype=jnp.float64)


def sim(**kw):
    args = dict(net=NET_, data=COV_, key=K_(3), lr=0.1, ts=[1.0])
    args.update(kw)
    return aedyn.simulate(args.pop("net"), args.pop("data"), **args)


def test_checkpoint_refuses_a_different_run(tmp_path):
    """A checkpoint records a fingerprint of everything that defines the run and names what differs."""
    path = tmp_path / "ck.npz"
    ts = [1.0, 2.0]
    ref = sim(ts=ts, checkpoint=path)
    again = sim(ts=ts, checkpoint=path)
    np.testing.assert_array_equal(np.asarray(again.pmse), np.asarray(ref.pmse))
    other_net = aedyn.init_autoencoder(K_(9), D_, 2, dtype=jnp.float64)
    other_cov = aedyn.spiked_covariance(K_(8), D_, (3.0, 5.0))
    for kw, field in ((dict(net=other_net), "network"), (dict(data=other_cov), "covariance"),
                      (dict(key=K_(4)), "key"), (dict(lr=0.2), "learning rates"), (dict(weight_decay=0.1), "weight decay"),
                      (dict(net=other_net.__class__(NET_.W.astype(jnp.float32), NET_.V.astype(jnp.float32))), "dtype")):
        with pytest.raises(ValueError, match=field):
            sim(ts=ts, checkpoint=path, **kw)


def test_files_are_readable_by_others(tmp_path):
    old = os.umask(0o022)
    try:
        tr = sim()
        tr.save_csv(tmp_path / "a.csv")
        tr.save_json(tmp_path / "a.json")
        for f in ("a.csv", "a.json"):
            assert (tmp_path / f).stat().st_mode & 0o777 == 0o644
    finally:
        os.umask(old)
