"""Bad input gets a clear error at the boundary, fast: for every public function and CLI command,
a table of wrong shapes, wrong types, non-finite and out-of-range values; each case asserts the
exception type and that the message names the argument (docs: README, "Bad input").

These check aedyn's own messages (what users see), so jaxtyping's checker is off here (own_errors).
"""

import math
import os

import diffrax
import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from typer.testing import CliRunner

import aedyn
from aedyn import fit, objectives, sweeps, theory
from aedyn.cli import app

pytestmark = pytest.mark.usefixtures("own_errors")

k = jax.random.key
D = 40
COV = aedyn.spiked_covariance(k(0), D, (3.0, 5.0))
NET = aedyn.init_autoencoder(k(1), D, 2, dtype=jnp.float64)
U = np.asarray(COV.eigvecs)
X = np.asarray(COV.sample(k(2), 5))
NAN_NET = eqx.tree_at(lambda n: n.W, NET, NET.W.at[0, 0].set(jnp.nan))
STATE = theory.init_state(NET, COV)
NAN_STATE = eqx.tree_at(lambda s: s.wt, STATE, STATE.wt.at[0, 0].set(jnp.nan))


def sim(**kw):
    args = dict(net=NET, data=COV, key=k(3), lr=0.1, ts=[1.0])
    args.update(kw)
    return aedyn.simulate(args.pop("net"), args.pop("data"), **args)


def solve(**kw):
    args = dict(init=NET, cov=COV, lr=0.1, ts=[1.0])
    args.update(kw)
    return theory.solve(args.pop("init"), args.pop("cov"), **args)


def sweep_t(**kw):
    args = dict(grid={"lr": [0.1]}, ts=[1.0])
    args.update(kw)
    return sweeps.sweep_theory(args.pop("cov", COV), **args)


def sweep_s(**kw):
    args = dict(grid={"lr": [0.1]}, ts=[1.0])
    args.update(kw)
    return sweeps.sweep_simulation(args.pop("cov", COV), **args)


# (id, call, exception type, text the message must contain: the argument's name)
CASES = [
    # Covariance and its methods
    ("cov-eigvals-shape", lambda: aedyn.Covariance(np.ones((2, 2)), U), ValueError, "eigvals"),
    ("cov-eigvals-type", lambda: aedyn.Covariance("ab", U), TypeError, "eigvals"),
    ("cov-eigvals-nan", lambda: aedyn.Covariance([np.nan, 1.0], U), ValueError, "eigvals"),
    ("cov-eigvals-negative", lambda: aedyn.Covariance([2.0, -1.0], U), ValueError, "eigvals"),
    ("cov-eigvals-ascending", lambda: aedyn.Covariance([1.0, 2.0], U), ValueError, "from_matrix"),
    ("cov-eigvecs-shape", lambda: aedyn.Covariance([2.0, 1.0, 0.5], U), ValueError, "eigvecs"),
    ("cov-eigvecs-nan", lambda: aedyn.Covariance([2.0, 1.0], U * np.nan), ValueError, "eigvecs"),
    ("cov-eigvecs-not-orthonormal", lambda: aedyn.Covariance([2.0, 1.0], 2 * U), ValueError, "eigvecs"),
    ("cov-bulk-negative", lambda: aedyn.Covariance([2.0, 1.0], U, -1.0), ValueError, "bulk"),
    ("cov-bulk-nan", lambda: aedyn.Covariance([2.0, 1.0], U, np.nan), ValueError, "bulk"),
    ("cov-bulk-shape", lambda: aedyn.Covariance([2.0, 1.0], U, [1.0, 2.0]), ValueError, "bulk"),
    ("from_matrix-shape", lambda: aedyn.Covariance.from_matrix(np.ones((3, 4))), ValueError, "matrix"),
    ("from_matrix-type", lambda: aedyn.Covariance.from_matrix("C"), TypeError, "matrix"),
    ("from_matrix-nan", lambda: aedyn.Covariance.from_matrix(np.full((3, 3), np.nan)), ValueError, "matrix"),
    ("from_matrix-asymmetric", lambda: aedyn.Covariance.from_matrix(np.triu(np.ones((3, 3)))), ValueError, "symmetric"),
    ("from_matrix-not-psd", lambda: aedyn.Covariance.from_matrix(-np.eye(3)), ValueError, "positive semi-definite"),
    ("from_samples-shape", lambda: aedyn.Covariance.from_samples(np.ones(5)), ValueError, "samples"),
    ("from_samples-type", lambda: aedyn.Covariance.from_samples(object()), TypeError, "samples"),
    ("from_samples-nan", lambda: aedyn.Covariance.from_samples(X * np.nan), ValueError, "samples"),
    ("sample-n-negative", lambda: COV.sample(k(0), -1), ValueError, "n"),
    ("sample-n-type", lambda: COV.sample(k(0), 2.5), TypeError, "n"),
    ("pca_errors-negative", lambda: COV.pca_errors(-1), ValueError, "K"),
    ("pca_errors-type", lambda: COV.pca_errors(1.5), TypeError, "K"),
    ("pca_errors-too-many", lambda: COV.pca_errors(D + 1), ValueError, "K"),
    # spiked_covariance
    ("spiked-D-zero", lambda: aedyn.spiked_covariance(k(0), 0, (1.0,)), ValueError, "D"),
    ("spiked-D-type", lambda: aedyn.spiked_covariance(k(0), 2.5, (1.0,)), TypeError, "D"),
    ("spiked-strength-nan", lambda: aedyn.spiked_covariance(k(0), 10, (np.nan,)), ValueError, "strengths"),
    ("spiked-strength-type", lambda: aedyn.spiked_covariance(k(0), 10, "ab"), TypeError, "strengths"),
    ("spiked-strength-shape", lambda: aedyn.spiked_covariance(k(0), 10, [[1.0, 2.0]]), ValueError, "strengths"),
    ("spiked-too-many", lambda: aedyn.spiked_covariance(k(0), 2, (1.0, 2.0, 3.0)), ValueError, "strengths"),
    ("spiked-noise-negative", lambda: aedyn.spiked_covariance(k(0), 10, (1.0,), noise=-1.0), ValueError, "noise"),
    ("spiked-noise-nan", lambda: aedyn.spiked_covariance(k(0), 10, (1.0,), noise=np.nan), ValueError, "noise"),
    ("spiked-directions", lambda: aedyn.spiked_covariance(k(0), 10, (1.0,), directions="cos"), ValueError, "directions"),
    ("spiked-key", lambda: aedyn.spiked_covariance(0, 10, (1.0,)), TypeError, "key"),
    # AutoEncoder, init_autoencoder
    ("ae-W-shape", lambda: aedyn.AutoEncoder(np.zeros(5), np.zeros(5)), ValueError, "W"),
    ("ae-W-type", lambda: aedyn.AutoEncoder("W", None), TypeError, "W"),
    ("ae-W-int", lambda: aedyn.AutoEncoder(np.zeros((2, 5), int), np.zeros((2, 5), int)), TypeError, "W"),
    ("ae-W-nan", lambda: aedyn.AutoEncoder(np.full((2, 5), np.nan), np.zeros((2, 5))), ValueError, "W"),
    ("ae-K-gt-D", lambda: aedyn.AutoEncoder(np.zeros((6, 5)), np.zeros((6, 5))), ValueError, "W"),
    ("ae-V-shape", lambda: aedyn.AutoEncoder(np.zeros((2, 5)), np.zeros((2, 4))), ValueError, "V"),
    ("ae-V-inf", lambda: aedyn.AutoEncoder(np.zeros((2, 5)), np.full((2, 5), np.inf)), ValueError, "V"),
    ("ae-b-shape", lambda: aedyn.AutoEncoder(np.zeros((2, 5)), np.zeros((2, 5)), b=np.zeros(3)), ValueError, "b"),
    ("ae-b-nan", lambda: aedyn.AutoEncoder(np.zeros((2, 5)), np.zeros((2, 5)), b=[np.nan, 0.0]), ValueError, "b"),
    ("ae-c-shape", lambda: aedyn.AutoEncoder(np.zeros((2, 5)), np.zeros((2, 5)), c=np.zeros(4)), ValueError, "c"),
    ("ae-c-nan", lambda: aedyn.AutoEncoder(np.zeros((2, 5)), np.zeros((2, 5)), c=np.full(5, np.nan)), ValueError, "c"),
    ("ae-c-type", lambda: aedyn.AutoEncoder(np.zeros((2, 5)), np.zeros((2, 5)), c="c"), TypeError, "c"),
    ("ae-activation", lambda: aedyn.AutoEncoder(np.zeros((2, 5)), np.zeros((2, 5)), "swish"), ValueError, "activation"),
    ("ae-activation-type", lambda: aedyn.AutoEncoder(np.zeros((2, 5)), np.zeros((2, 5)), 3), TypeError, "activation"),
    ("init-D-zero", lambda: aedyn.init_autoencoder(k(0), 0, 1), ValueError, "D"),
    ("init-K-type", lambda: aedyn.init_autoencoder(k(0), 5, 2.7), TypeError, "K"),
    ("init-K-gt-D", lambda: aedyn.init_autoencoder(k(0), 3, 4), ValueError, "K"),
    ("init-scale-nan", lambda: aedyn.init_autoencoder(k(0), 5, 1, scale=np.nan), ValueError, "scale"),
    ("init-scale-negative", lambda: aedyn.init_autoencoder(k(0), 5, 1, scale=-1.0), ValueError, "scale"),
    ("init-scale-type", lambda: aedyn.init_autoencoder(k(0), 5, 1, scale="0.1"), TypeError, "scale"),
    ("init-bias-nan", lambda: aedyn.init_autoencoder(k(0), 5, 1, bias=np.nan), ValueError, "bias"),
    ("init-output-bias-nan", lambda: aedyn.init_autoencoder(k(0), 5, 1, output_bias=np.nan), ValueError,
     "output_bias"),
    ("init-output-bias-type", lambda: aedyn.init_autoencoder(k(0), 5, 1, output_bias="0"), TypeError, "output_bias"),
    ("init-key", lambda: aedyn.init_autoencoder(0, 5, 1), TypeError, "key"),
    ("init-dtype", lambda: aedyn.init_autoencoder(k(0), 5, 1, dtype=jnp.int32), TypeError, "dtype"),
    # pmse, overlaps, pmse_mc
    ("pmse-net-type", lambda: aedyn.pmse("net", COV), TypeError, "net"),
    ("pmse-cov-type", lambda: aedyn.pmse(NET, "cov"), TypeError, "cov"),
    ("pmse-cov-dim", lambda: aedyn.pmse(NET, aedyn.spiked_covariance(k(0), 12, (1.0,))), ValueError, "cov"),
    ("overlaps-cov-dim", lambda: aedyn.overlaps(NET, aedyn.spiked_covariance(k(0), 12, (1.0,))), ValueError, "cov"),
    ("pmse_mc-shape", lambda: aedyn.pmse_mc(NET, np.zeros((4, 12))), ValueError, "samples"),
    # learning rates, sgd_step
    ("lr-string", lambda: aedyn.learning_rates("0.1"), TypeError, "lr"),
    ("lr-negative", lambda: aedyn.learning_rates(-0.1), ValueError, "lr"),
    ("lr-nan", lambda: aedyn.learning_rates(np.nan), ValueError, "lr"),
    ("lr-shape", lambda: aedyn.learning_rates([0.1, 0.2]), ValueError, "lr"),
    ("lr-keys", lambda: aedyn.learning_rates({"X": 0.1}), ValueError, "lr"),
    ("lr-c-negative", lambda: aedyn.learning_rates({"W": 0.1, "c": -0.1}), ValueError, "eta_c"),
    ("sgd-x-shape", lambda: aedyn.sgd_step(NET, np.zeros(D + 1), 0.1), ValueError, "x"),
    ("sgd-rule", lambda: aedyn.sgd_step(NET, X[0], 0.1, rule="hebb"), ValueError, "rule"),
    ("sgd-weight-decay", lambda: aedyn.sgd_step(NET, X[0], 0.1, weight_decay=D), ValueError, "weight_decay"),
    ("sgd-net-type", lambda: aedyn.sgd_step("net", X[0], 0.1), TypeError, "net"),
    # simulate
    ("sim-net-type", lambda: sim(net="net"), TypeError, "net"),
    ("sim-net-nan", lambda: sim(net=NAN_NET), ValueError, "net"),
    ("sim-data-shape", lambda: sim(data=np.zeros((4, D + 1))), ValueError, "data"),
    ("sim-data-type", lambda: sim(data="data"), TypeError, "data"),
    ("sim-data-nan", lambda: sim(data=X * np.nan), ValueError, "data"),
    ("sim-key", lambda: sim(key=0), TypeError, "key"),
    ("sim-lr-string", lambda: sim(lr="0.1"), TypeError, "lr"),
    ("sim-lr-negative", lambda: sim(lr=-1.0), ValueError, "lr"),
    ("sim-ts-empty", lambda: sim(ts=[]), ValueError, "ts"),
    ("sim-ts-decreasing", lambda: sim(ts=[2.0, 1.0]), ValueError, "ts"),
    ("sim-ts-nan", lambda: sim(ts=[np.nan]), ValueError, "ts"),
    ("sim-ts-below-one-step", lambda: sim(ts=[0.001, 0.002, 0.003]), ValueError, "ts"),
    ("sim-ts-type", lambda: sim(ts="1.0"), TypeError, "ts"),
    ("sim-rule", lambda: sim(rule="hebb"), ValueError, "rule"),
    ("sim-sanger-untied", lambda: sim(rule="sanger"), ValueError, "rule"),
    ("sim-weight-decay-ge-D", lambda: sim(weight_decay=float(D)), ValueError, "weight_decay"),
    ("sim-weight-decay-nan", lambda: sim(weight_decay=np.nan), ValueError, "weight_decay"),
    ("sim-block", lambda: sim(block=0), ValueError, "block"),
    ("sim-chunk", lambda: sim(chunk=0), ValueError, "chunk"),
    ("sim-chunk-type", lambda: sim(chunk=2.5), TypeError, "chunk"),
    ("sim-on-divergence", lambda: sim(on_divergence="ignore"), ValueError, "on_divergence"),
    # log_times, get_activation
    ("log_times-nan", lambda: aedyn.log_times(np.nan), ValueError, "t_max"),
    ("log_times-n", lambda: aedyn.log_times(10.0, 1), ValueError, "n"),
    ("log_times-t_min", lambda: aedyn.log_times(10.0, 5, t_min=0.0), ValueError, "t_min"),
    ("activation-name", lambda: aedyn.get_activation("swish"), ValueError, "activation"),
    ("activation-type", lambda: aedyn.get_activation(3), TypeError, "activation"),
    ("activation-not-elementwise", lambda: aedyn.get_activation(jnp.sum), ValueError, "activation"),
    # theory
    ("solve-init-type", lambda: solve(init="net"), TypeError, "init"),
    ("solve-init-nan", lambda: solve(init=NAN_STATE), ValueError, "init"),
    ("solve-net-nan", lambda: solve(init=NAN_NET), ValueError, "W"),
    ("solve-cov-type", lambda: solve(cov="cov"), TypeError, "cov"),
    ("solve-cov-dim", lambda: solve(cov=aedyn.spiked_covariance(k(0), 12, (1.0,))), ValueError, "cov"),
    ("solve-lr-string", lambda: solve(lr="0.1"), TypeError, "lr"),
    ("solve-lr-nan", lambda: solve(lr=np.nan), ValueError, "lr"),
    ("solve-rule", lambda: solve(rule="sanger"), ValueError, "rule"),
    ("solve-weight-decay", lambda: solve(weight_decay=float(D)), ValueError, "weight_decay"),
    ("solve-init-scale-nan", lambda: solve(init_scale=np.nan), ValueError, "init_scale"),
    ("solve-init-scale-type", lambda: solve(init_scale="1"), TypeError, "init_scale"),
    ("solve-method", lambda: solve(method="euler"), ValueError, "method"),
    ("solve-solver", lambda: solve(solver=42), TypeError, "solver"),
    ("solve-rtol", lambda: solve(rtol=-1.0), ValueError, "rtol"),
    ("solve-atol-nan", lambda: solve(atol=np.nan), ValueError, "atol"),
    ("solve-max-steps", lambda: solve(max_steps=0), ValueError, "max_steps"),
    ("solve-max-steps-type", lambda: solve(max_steps=1.5), TypeError, "max_steps"),
    ("solve-ts-empty", lambda: solve(ts=[]), ValueError, "ts"),
    ("solve-ts-decreasing", lambda: solve(ts=[2.0, 1.0]), ValueError, "ts"),
    ("solve-ts-inf", lambda: solve(ts=[np.inf]), ValueError, "ts"),
    ("solve-nodes", lambda: solve(nodes=1), ValueError, "nodes"),
    ("solve-adjoint", lambda: solve(adjoint="backsolve"), TypeError, "adjoint"),
    ("solve-merge_rtol-neg", lambda: solve(merge_rtol=-0.1), ValueError, "merge_rtol"),
    ("solve-merge_rtol-nan", lambda: solve(merge_rtol=math.nan), ValueError, "merge_rtol"),
    ("solve-merge_rtol-str", lambda: solve(merge_rtol="exact"), TypeError, "merge_rtol"),
    ("solve-groups-mismatch", lambda: solve(init=theory.init_state(NET, COV.full(), merge_rtol=1e-10),
                                            cov=COV), ValueError, "cov"),
    ("merge_modes-state", lambda: theory.merge_modes(NET, COV), TypeError, "state"),
    ("merge_modes-cov", lambda: theory.merge_modes(STATE, "cov"), TypeError, "cov"),
    ("merge_modes-rtol", lambda: theory.merge_modes(STATE, COV, rtol=-1.0), ValueError, "rtol"),
    ("merge_modes-modes", lambda: theory.merge_modes(STATE, COV.full()), ValueError, "cov"),
    ("init_state-merge_rtol", lambda: theory.init_state(NET, COV, merge_rtol=math.inf), ValueError, "merge_rtol"),
    ("theory_params-groups-range", lambda: theory.theory_params(COV, 0.1, groups=[(1, 9)]), ValueError, "groups"),
    ("theory_params-groups-type", lambda: theory.theory_params(COV, 0.1, groups=[1, 2]), TypeError, "groups"),
    ("mode_groups-rtol", lambda: theory.mode_groups([3.0, 2.0, 2.0], 1, 2, rtol=-1.0), ValueError, "rtol"),
    ("mode_groups-eigvals", lambda: theory.mode_groups([[3.0]], 1, 2, rtol=0.1), ValueError, "eigvals"),
    ("stiff_solver-positional", lambda: theory.stiff_solver(STATE), TypeError, "positional"),
    ("stiff_solver-rule", lambda: theory.stiff_solver(rule="sanger"), ValueError, "rule"),
    ("stiff_solver-method", lambda: theory.stiff_solver(method="euler"), ValueError, "method"),
    ("stiff_solver-nodes", lambda: theory.stiff_solver(nodes=1.5), TypeError, "nodes"),
    ("Rodas5-rule", lambda: theory.Rodas5(rule=3), ValueError, "rule"),
    ("Rodas5-method", lambda: theory.Rodas5(method="auto"), ValueError, "method"),
    ("Rodas5-nodes", lambda: theory.Rodas5(nodes=1), ValueError, "nodes"),
    ("Rodas5-nodes-type", lambda: theory.Rodas5(nodes=2.5), TypeError, "nodes"),
    ("structured_implicit-size", lambda: theory.structured_implicit(0, 12), ValueError, "size"),
    ("structured_implicit-overlaps", lambda: theory.structured_implicit(24, 1.5), TypeError, "overlaps"),
    ("structured_implicit-size-nan", lambda: theory.structured_implicit(math.nan, 12), TypeError, "size"),
    ("structured_implicit-size-array", lambda: theory.structured_implicit(np.array([24]), 12), TypeError, "size"),
    ("structured_implicit-overlaps-negative", lambda: theory.structured_implicit(24, -3), ValueError, "overlaps"),
    ("stiff_controller-rtol-zero", lambda: theory.stiff_controller(rtol=0.0), ValueError, "rtol"),
    ("stiff_controller-atol-inf", lambda: theory.stiff_controller(atol=math.inf), ValueError, "atol"),
    ("stiff_controller-rtol-str", lambda: theory.stiff_controller(rtol="1e-8"), TypeError, "rtol"),
    ("init_state-net", lambda: theory.init_state("net", COV), TypeError, "net"),
    ("init_state-cov-dim", lambda: theory.init_state(NET, aedyn.spiked_covariance(k(0), 12, (1.0,))), ValueError, "cov"),
    ("init_state_random-K", lambda: theory.init_state_random(k(0), COV, 0), ValueError, "K"),
    ("init_state_random-scale", lambda: theory.init_state_random(k(0), COV, 2, scale=np.nan), ValueError, "scale"),
    ("theory_params-lr", lambda: theory.theory_params(COV, "x"), TypeError, "lr"),
    # sweeps
    ("sweep-cov-type", lambda: sweep_t(cov="cov"), TypeError, "cov"),
    ("sweep-grid-unknown", lambda: sweep_t(grid={"eta": [0.1]}), ValueError, "eta"),
    ("sweep-grid-type", lambda: sweep_t(grid=[0.1]), TypeError, "grid"),
    ("sweep-output-bias-nan", lambda: sweep_t(output_bias=np.nan), ValueError, "output_bias"),
    ("sweep-sim-output-bias-type", lambda: sweep_s(output_bias="0"), TypeError, "output_bias"),
    ("sweep-lr-c-negative", lambda: sweep_t(grid={"lr_c": [-0.1]}), ValueError, "lr_c"),
    ("sweep-grid-negative", lambda: sweep_t(grid={"lr": [-0.1]}), ValueError, "lr_W"),
    ("sweep-grid-nan", lambda: sweep_t(grid={"init_scale": [np.nan]}), ValueError, "init_scale"),
    ("sweep-seed-float", lambda: sweep_t(grid={"seed": [0.5, 0.7]}), ValueError, "seed"),
    ("sweep-K-float", lambda: sweep_t(grid={"K": [2.7]}), TypeError, "K"),
    ("sweep-K-too-large", lambda: sweep_t(K=D + 1), ValueError, "K"),
    ("sweep-rho-length", lambda: sweep_t(grid={"rho": [[1.0, 2.0, 3.0]]}), ValueError, "rho"),
    ("sweep-both", lambda: sweep_t(configs=[{}]), ValueError, "exactly one"),
    ("sweep-chunk", lambda: sweep_t(chunk_size=0), ValueError, "chunk_size"),
    ("sweep-rule", lambda: sweep_t(rule="sanger"), ValueError, "rule"),
    ("sweep-method", lambda: sweep_t(method="euler"), ValueError, "method"),
    ("sweep-max-steps", lambda: sweep_t(max_steps=0), ValueError, "max_steps"),
    ("sweep-devices", lambda: sweep_t(devices=99), ValueError, "devices"),
    ("sweep-ts", lambda: sweep_t(ts=[1.0, 0.5]), ValueError, "ts"),
    ("sweep-sgd-dtype", lambda: sweep_s(dtype=jnp.int32), TypeError, "dtype"),
    ("sweep-sgd-block", lambda: sweep_s(block=0), ValueError, "block"),
    ("sweep-sgd-rule", lambda: sweep_s(rule="sanger"), ValueError, "rule"),
    ("sweep-sgd-ts-below-one-step", lambda: sweep_s(ts=[0.001]), ValueError, "ts"),
    # objectives, fit, analysis, validation
    ("make_curve-base", lambda: objectives.make_curve(COV, base={"eta": 0.1}), ValueError, "base"),
    ("curve_distance-shape", lambda: objectives.curve_distance(jnp.ones(3), np.ones(4)), ValueError, "observed"),
    ("minimise-optimizer", lambda: fit.minimise(lambda t: t["a"], {"a": 1.0}, optimizer="sgd"), ValueError, "optimizer"),
    ("minimise-theta0", lambda: fit.minimise(lambda t: t["a"], {"a": -1.0}), ValueError, "a"),
    ("minimise-theta0-type", lambda: fit.minimise(lambda t: t["a"], [1.0]), TypeError, "theta0"),
    ("minimise-bounds", lambda: fit.minimise(lambda t: t["a"], {"a": 1.0}, bounds={"a": (2.0, 1.0)}), ValueError, "bounds"),
    ("minimise-bounds-unknown", lambda: fit.minimise(lambda t: t["a"], {"a": 1.0}, bounds={"b": (1, 2)}), ValueError, "bounds"),
    ("minimise-max-steps", lambda: fit.minimise(lambda t: t["a"], {"a": 1.0}, max_steps=0), ValueError, "max_steps"),
    ("fit_curve-observed-nan", lambda: fit.fit_curve([1.0, 2.0], [np.nan, 1.0], COV), ValueError, "observed"),
    ("fit_curve-observed-shape", lambda: fit.fit_curve([1.0, 2.0], [1.0], COV), ValueError, "observed"),
    ("find_plateaus-short", lambda: aedyn.analysis.find_plateaus([1.0, 2.0], [1.0, 1.0]), ValueError, "ts"),
    ("one_step_check-n", lambda: aedyn.validation.one_step_check(NET, COV, lr=0.1, key=k(0), n=1), ValueError, "n"),
    ("one_step_check-rule", lambda: aedyn.validation.one_step_check(NET, COV, lr=0.1, key=k(0), rule="x"), ValueError, "rule"),
]


@pytest.mark.parametrize("call, exc, needle", [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_public_functions_reject_bad_input(call, exc, needle):
    with pytest.raises(exc) as err:
        call()
    assert needle in str(err.value), f"the message does not name {needle!r}: {err.value}"


def test_sweep_result_and_trajectory_errors(tmp_path):
    res = sweeps.SweepResult("theory", ("lr",), {"lr": np.array([0.1])}, np.array([1.0]), np.ones((1, 1)),
                             {}, {"ok": np.array([True])})
    with pytest.raises(KeyError, match="axis"):
        res.mean("foo")
    with pytest.raises(KeyError, match="foo"):
        res.sel(foo=1)
    with pytest.raises(KeyError, match="lr"):
        res.sel(lr=0.2)
    tr = sim()
    with pytest.raises(OSError, match="proc"):
        tr.save_csv("/proc/aedyn/x.csv")
    out = tmp_path / "a_file"
    out.write_text("x")
    with pytest.raises(ValueError, match="not a folder"):
        sweep_t(out=out)


def test_errors_are_fast():
    """Errors at the boundary come before any compilation: the whole table runs in seconds."""
    import time

    t0 = time.perf_counter()
    for _, call, exc, _ in CASES:
        with pytest.raises(exc):
            call()
    assert time.perf_counter() - t0 < 30.0


CLI = [
    (["simulate", "--D", "0"], "--D"),
    (["simulate", "--K", "600"], "--K"),
    (["simulate", "--K", "x"], "--K"),
    (["simulate", "--lr", "-1"], "--lr"),
    (["simulate", "--lr", "nan"], "--lr"),
    (["simulate", "--lr-W", "inf"], "--lr-W"),
    (["simulate", "--lr-c", "-1"], "--lr-c"),
    (["simulate", "--output-bias", "nan"], "--output-bias"),
    (["compare", "--lr-c", "nan"], "--lr-c"),
    (["simulate", "--strengths", "a,b"], "--strengths"),
    (["simulate", "--strengths", "nan"], "--strengths"),
    (["simulate", "--t-max", "0"], "--t-max"),
    (["simulate", "--D", "1", "--K", "1", "--strengths", "1", "--t-max", "0.5"], "--t-max"),
    (["simulate", "--n-times", "1"], "--n-times"),
    (["simulate", "--seed", "-1"], "--seed"),
    (["simulate", "--weight-decay", "1000"], "--weight-decay"),
    (["simulate", "--scale", "nan"], "--scale"),
    (["simulate", "--noise", "-1"], "--noise"),
    (["simulate", "--activation", "swish"], "--activation"),
    (["simulate", "--rule", "sanger"], "--rule"),
    (["simulate", "--out", "/proc/aedyn-x"], "--out"),
    (["demo", "--t-max", "-1"], "--t-max"),
    (["demo", "--D", "0"], "--D"),
    (["demo", "--out", "/proc/aedyn-x"], "--out"),
    (["compare", "--seeds", "0"], "--seeds"),
    (["compare", "--lr", "-2"], "--lr"),
    (["compare", "--rule", "sanger", "--tied"], "--rule"),
    (["figures", "--only", "nonsense"], "--only"),
    (["finite-size", "--Ds", "a"], "--Ds"),
    (["finite-size", "--Ds", "1"], "--Ds"),
    (["finite-size", "--S", "-1"], "--S"),
]


@pytest.mark.parametrize("args, needle", CLI, ids=[" ".join(a) for a, _ in CLI])
def test_cli_rejects_bad_options(args, needle, tmp_path):
    if "--out" not in args:
        args = args + ["--out", str(tmp_path)] if args[0] != "finite-size" else args + ["--out", str(tmp_path)]
    res = CliRunner().invoke(app, args)
    assert res.exit_code in (1, 2), res.output
    assert needle in res.output, res.output
    assert "Traceback" not in res.output

