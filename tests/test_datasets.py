"""Real data: file formats (IDX, CIFAR-10 binary and Python batches, .npy/.npz) including corrupt,
truncated and malicious files; preprocessing recipes; the embedded natural patches; streamed
second moments; the Dataset the simulator accepts (sampling modes, held-out error, jit/vmap,
checkpoints)."""

from __future__ import annotations

import gzip
import os
import pickle
import time

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import aedyn
from aedyn import datasets

# -- writers of small files in each format (by hand, from the formats' specifications) -------------

_IDX_CODE = {np.dtype(np.uint8): 0x08, np.dtype(np.int8): 0x09, np.dtype(np.int16): 0x0B,
             np.dtype(np.int32): 0x0C, np.dtype(np.float32): 0x0D, np.dtype(np.float64): 0x0E}


def idx_bytes(arr) -> bytes:
    arr = np.asarray(arr)
    head = bytes([0, 0, _IDX_CODE[arr.dtype], arr.ndim]) + np.asarray(arr.shape, ">u4").tobytes()
    return head + arr.astype(arr.dtype.newbyteorder(">")).tobytes()


def write_idx(path, arr, gz=False):
    data = idx_bytes(arr)
    with (gzip.open(path, "wb") if gz else open(path, "wb")) as f:
        f.write(data)
    return path


def cifar_images(n, seed):
    return np.random.default_rng(seed).integers(0, 256, (n, 32, 32, 3), dtype=np.uint8)


def cifar_record_bytes(images, labels) -> bytes:
    planes = images.transpose(0, 3, 1, 2).reshape(len(images), -1)  # R, G, B planes, row by row
    return np.concatenate([np.asarray(labels, np.uint8)[:, None], planes], axis=1).tobytes()


def cifar_python_bytes(images, labels, *, numpy_core="numpy._core") -> bytes:
    """A batch as the official files hold it: a dict with bytes keys, protocol 2 (Python 2 era)."""
    planes = np.ascontiguousarray(images.transpose(0, 3, 1, 2).reshape(len(images), -1))
    d = {b"batch_label": b"training batch", b"labels": [int(v) for v in labels], b"data": planes,
         b"filenames": [b"img_%d.png" % i for i in range(len(images))]}
    raw = pickle.dumps(d, protocol=2)
    if numpy_core != "numpy._core":  # the official files (NumPy 1.x) refer to numpy.core.multiarray
        raw = raw.replace(b"cnumpy._core.multiarray\n", b"c" + numpy_core.encode() + b".multiarray\n")
    return raw


def make_cifar_folder(root, kind, n=3):
    folder = root / ("cifar-10-batches-bin" if kind == "binary" else "cifar-10-batches-py")
    folder.mkdir(parents=True)
    imgs = {}
    for i, name in enumerate([f"data_batch_{j}" for j in range(1, 6)] + ["test_batch"]):
        im = cifar_images(n, i)
        lab = np.arange(n) % 10
        imgs[name] = im
        if kind == "binary":
            (folder / f"{name}.bin").write_bytes(cifar_record_bytes(im, lab))
        else:
            (folder / name).write_bytes(cifar_python_bytes(im, lab))
    return folder, imgs


class Evil:
    """A pickle payload that would write a marker file if it were ever called."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (eval, (f"__import__('pathlib').Path({self.marker!r}).write_text('executed')",))


# -- IDX ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("gz", [False, True])
@pytest.mark.parametrize("dtype", [np.uint8, np.int16, np.float32])
def test_read_idx_round_trip(tmp_path, gz, dtype):
    a = (np.arange(2 * 3 * 4) - 5).reshape(2, 3, 4).astype(dtype)
    if dtype == np.uint8:
        a = np.arange(24, dtype=np.uint8).reshape(2, 3, 4)
    path = write_idx(tmp_path / ("a.idx" + (".gz" if gz else "")), a, gz)
    b = datasets.read_idx(path)
    assert b.dtype == np.dtype(dtype) and b.dtype.isnative and b.shape == a.shape
    np.testing.assert_array_equal(b, a)


@pytest.mark.usefixtures("own_errors")
def test_read_idx_refuses_bad_files(tmp_path):
    good = idx_bytes(np.arange(60, dtype=np.uint8).reshape(3, 4, 5))
    cases = {
        "truncated.idx": (good[:-7], "truncated"),
        "trailing.idx": (good + b"\x00", "trailing bytes"),
        "magic.idx": (b"\x01\x02" + good[2:], "not an IDX file"),
        "typecode.idx": (good[:2] + b"\x07" + good[3:], "not an IDX file"),
        "header.idx": (good[:6], "truncated"),
        "empty.idx": (b"", "truncated"),
        "huge.idx": (bytes([0, 0, 8, 3]) + np.asarray([100000, 100000, 1000], ">u4").tobytes(), "more than"),
    }
    for name, (data, msg) in cases.items():
        p = tmp_path / name
        p.write_bytes(data)
        t0 = time.perf_counter()
        with pytest.raises(ValueError, match=msg) as info:
            datasets.read_idx(p)
        assert str(p) in str(info.value), name
        assert time.perf_counter() - t0 < 1.0
    # gzip: a truncated stream and a corrupted one
    gz = gzip.compress(good)
    (tmp_path / "cut.gz").write_bytes(gz[: len(gz) // 2])
    with pytest.raises(ValueError, match=r"cut\.gz.*(corrupt|truncated)"):
        datasets.read_idx(tmp_path / "cut.gz")
    bad = bytearray(gz)
    bad[-6] ^= 0xFF  # the CRC / size trailer
    (tmp_path / "crc.gz").write_bytes(bytes(bad))
    with pytest.raises(ValueError, match=r"crc\.gz.*corrupt"):
        datasets.read_idx(tmp_path / "crc.gz")
    with pytest.raises(FileNotFoundError, match="missing.idx"):
        datasets.read_idx(tmp_path / "missing.idx")


def _mnist_folder(root, n_train=40, n_test=12, gz=True, sub=""):
    folder = root / sub if sub else root
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    tr = rng.integers(0, 256, (n_train, 28, 28), dtype=np.uint8)
    te = rng.integers(0, 256, (n_test, 28, 28), dtype=np.uint8)
    ext = ".gz" if gz else ""
    write_idx(folder / f"train-images-idx3-ubyte{ext}", tr, gz)
    write_idx(folder / f"t10k-images-idx3-ubyte{ext}", te, gz)
    write_idx(folder / f"train-labels-idx1-ubyte{ext}", np.zeros(n_train, np.uint8), gz)
    return tr, te


@pytest.mark.parametrize("gz", [False, True])
def test_mnist_and_fashion_mnist_loaders(tmp_path, gz):
    tr, te = _mnist_folder(tmp_path, gz=gz)
    X = datasets.mnist(tmp_path, recipe="none")
    np.testing.assert_allclose(X, tr.reshape(40, -1) / 255.0, rtol=1e-6)
    assert X.dtype == np.float32 and X.shape == (40, 784)
    H = datasets.fashion_mnist(tmp_path, split="test", recipe="none")
    np.testing.assert_allclose(H, te.reshape(12, -1) / 255.0, rtol=1e-6)
    assert datasets.fashion_mnist(tmp_path, split="all", recipe="none").shape == (52, 784)
    # the recipe's statistics come from the training split, also for the test split
    prep = datasets.Preprocessing.fit(tr.reshape(40, -1), "authors")
    np.testing.assert_allclose(datasets.mnist(tmp_path, split="test"), prep(te.reshape(12, -1)), rtol=1e-6)


@pytest.mark.usefixtures("own_errors")
def test_mnist_folder_errors(tmp_path, monkeypatch):
    with pytest.raises(FileNotFoundError, match="nowhere"):
        datasets.mnist(tmp_path / "nowhere")
    with pytest.raises(FileNotFoundError, match=r"train-images-idx3-ubyte.*pass folder="):
        datasets.mnist(tmp_path)
    monkeypatch.setattr("aedyn._datasets.FASHION_MNIST_FOLDERS", (str(tmp_path / "absent"),))
    with pytest.raises(FileNotFoundError, match="dataset-fashion-mnist"):
        datasets.fashion_mnist()
    _mnist_folder(tmp_path / "raw")  # torchvision's layout: <root>/raw
    monkeypatch.setattr("aedyn._datasets.FASHION_MNIST_FOLDERS", (str(tmp_path),))
    assert datasets.fashion_mnist(recipe="none").shape == (40, 784)  # found without a folder
    # a corrupt file in the folder: refused, naming it, nothing returned
    (tmp_path / "raw" / "t10k-images-idx3-ubyte.gz").write_bytes(b"\x1f\x8b\x08garbage")
    with pytest.raises(ValueError, match="t10k-images-idx3-ubyte.gz"):
        datasets.fashion_mnist(recipe="none")
    with pytest.raises(ValueError, match="recipe"):
        datasets.mnist(tmp_path, recipe="zca")
    with pytest.raises(ValueError, match="split"):
        datasets.natural_patches(split="validation")


# -- CIFAR-10 ----------------------------------------------------------------------------------------


def test_cifar10_binary_and_python_batches_agree(tmp_path):
    fb, imgs = make_cifar_folder(tmp_path / "b", "binary")
    fp, _ = make_cifar_folder(tmp_path / "p", "python")
    a = datasets.read_cifar_binary(fb / "data_batch_1.bin")
    b = datasets.read_cifar_python(fp / "data_batch_1")
    np.testing.assert_array_equal(a, imgs["data_batch_1"])
    np.testing.assert_array_equal(b, imgs["data_batch_1"])
    Xb = datasets.cifar10(tmp_path / "b", recipe="none")
    Xp = datasets.cifar10(fp, recipe="none")  # the batch folder itself works too
    assert Xb.shape == (15, 1024) and Xb.dtype == np.float32
    np.testing.assert_array_equal(Xb, Xp)
    # grayscale: ITU-R BT.709 luma of skimage.color.rgb2gray, pixels in [0, 1], rows flattened
    im = imgs["data_batch_2"][1].astype(np.float64) / 255
    gray = 0.2125 * im[..., 0] + 0.7154 * im[..., 1] + 0.0721 * im[..., 2]
    np.testing.assert_allclose(Xb[4], gray.reshape(-1), atol=1e-6)
    T = datasets.cifar10(tmp_path / "b", split="test", recipe="centred")
    assert T.shape == (3, 1024)
    # the official files (NumPy 1.x pickles) refer to numpy.core.multiarray: admitted too
    legacy = tmp_path / "legacy_batch"
    legacy.write_bytes(cifar_python_bytes(imgs["test_batch"], np.arange(3), numpy_core="numpy.core"))
    assert b"numpy.core.multiarray" in legacy.read_bytes()
    np.testing.assert_array_equal(datasets.read_cifar_python(legacy), imgs["test_batch"])


@pytest.mark.usefixtures("own_errors")
def test_cifar10_binary_refuses_bad_files(tmp_path):
    folder, imgs = make_cifar_folder(tmp_path, "binary")
    raw = (folder / "data_batch_3.bin").read_bytes()
    (folder / "data_batch_3.bin").write_bytes(raw[:-100])  # truncated
    with pytest.raises(ValueError, match=r"data_batch_3\.bin.*not a whole number of CIFAR-10 records"):
        datasets.cifar10(tmp_path)
    bad = bytearray(raw)
    bad[1 + 3072] = 12  # the label byte of record 1
    (folder / "data_batch_3.bin").write_bytes(bytes(bad))
    with pytest.raises(ValueError, match=r"data_batch_3\.bin.*label 12 of record 1"):
        datasets.cifar10(tmp_path)
    os.remove(folder / "data_batch_3.bin")
    with pytest.raises(FileNotFoundError, match=r"incomplete.*data_batch_3\.bin"):
        datasets.cifar10(tmp_path)
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match="no CIFAR-10 batches"):
        datasets.cifar10(tmp_path / "empty")


@pytest.mark.usefixtures("own_errors")
def test_cifar10_python_refuses_malicious_corrupt_and_foreign_pickles(tmp_path):
    folder, imgs = make_cifar_folder(tmp_path, "python")
    marker = tmp_path / "executed.txt"
    good = (folder / "data_batch_2").read_bytes()
    cases = {
        "code": (pickle.dumps({b"data": Evil(marker), b"labels": [0]}, protocol=2), r"refused.*builtin_?_?\.eval"),
        "code_p5": (pickle.dumps({"data": Evil(marker)}, protocol=5), r"refused.*builtins\.eval"),
        "os_system": (b"cos\nsystem\n(S'touch " + str(marker).encode() + b"'\ntR.", r"refused.*os\.system"),
        "codecs": (b"c_codecs\nencode\n(Vx\nVrot13\ntR.", "not a readable"),
        "truncated": (good[: len(good) // 2], "truncated or corrupt"),
        "garbage": (b"\x80\x02not a pickle at all", "truncated or corrupt"),
        "list": (pickle.dumps([1, 2, 3], protocol=2), "holds a list"),
        "objects": (pickle.dumps({b"data": np.array([[1]], dtype=object), b"labels": [0]}, protocol=2),
                    "object array"),
        "cifar100": (pickle.dumps({b"data": np.zeros((1, 3072), np.uint8), b"fine_labels": [0]}, protocol=2),
                     "CIFAR-100"),
        "labels": (pickle.dumps({b"data": np.zeros((2, 3072), np.uint8), b"labels": [0, 11]}, protocol=2),
                   "label 11 of record 1"),
        "trailing": (good + b"junk", "trailing bytes"),
    }
    for name, (data, msg) in cases.items():
        p = tmp_path / name
        p.write_bytes(data)
        t0 = time.perf_counter()
        with pytest.raises(ValueError, match=msg) as info:
            datasets.read_cifar_python(p)
        assert str(p) in str(info.value), name
        assert time.perf_counter() - t0 < 1.0
    assert not marker.exists(), "a pickle's code ran"
    # inside a dataset folder: the whole load is refused, nothing returned, nothing executed
    (folder / "data_batch_4").write_bytes(cases["code"][0])
    with pytest.raises(ValueError, match=r"data_batch_4.*refused"):
        datasets.cifar10(tmp_path)
    with pytest.raises(ValueError, match=r"data_batch_4.*refused"):
        datasets.load("cifar10", folder=tmp_path)
    assert not marker.exists()
    # the same pickle opened by pickle.load would run the code: the test payload is live
    pickle.loads(cases["code"][0])
    assert marker.exists()


# -- .npy / .npz -------------------------------------------------------------------------------------


@pytest.mark.usefixtures("own_errors")
def test_npy_npz(tmp_path):
    rng = np.random.default_rng(1)
    X = rng.standard_normal((60, 9))
    np.save(tmp_path / "x.npy", X)
    A = datasets.from_file(tmp_path / "x.npy", split="all", recipe="none")
    assert A.shape == (60, 9)
    np.testing.assert_allclose(np.sort(A, axis=0), np.sort(X, axis=0).astype(np.float32))
    tr = datasets.from_file(tmp_path / "x.npy", recipe="none")
    te = datasets.from_file(tmp_path / "x.npy", split="test", recipe="none")
    assert tr.shape == (50, 9) and te.shape == (10, 9)  # a fixed sixth held out
    np.testing.assert_array_equal(tr, datasets.from_file(tmp_path / "x.npy", recipe="none"))  # deterministic
    imgs = rng.integers(0, 256, (20, 6, 5), dtype=np.uint8)
    np.savez(tmp_path / "split.npz", train=imgs[:15], test=imgs[15:])
    np.testing.assert_allclose(datasets.from_file(tmp_path / "split.npz", split="test", recipe="none"),
                               imgs[15:].reshape(5, 30) / 255.0, rtol=1e-6)
    np.savez(tmp_path / "two.npz", a=X, b=X)
    with pytest.raises(ValueError, match=r"two\.npz.*several arrays \(a, b\)"):
        datasets.from_file(tmp_path / "two.npz")
    assert datasets.from_file(tmp_path / "two.npz", key="b", split="all", recipe="none").shape == (60, 9)
    with pytest.raises(ValueError, match=r"two\.npz.*no array 'c'"):
        datasets.from_file(tmp_path / "two.npz", key="c")
    # a pickle inside a .npy is refused without being unpickled
    marker = tmp_path / "executed.txt"
    np.save(tmp_path / "evil.npy", np.array([Evil(marker)], dtype=object), allow_pickle=True)
    with pytest.raises(ValueError, match=r"evil\.npy.*pickle"):
        datasets.from_file(tmp_path / "evil.npy")
    np.savez(tmp_path / "evil.npz", x=np.array([Evil(marker)], dtype=object))
    with pytest.raises(ValueError, match=r"evil\.npz.*pickle"):
        datasets.from_file(tmp_path / "evil.npz")
    assert not marker.exists()
    raw = (tmp_path / "two.npz").read_bytes()
    (tmp_path / "cut.npz").write_bytes(raw[: len(raw) // 2])
    with pytest.raises(ValueError, match=r"cut\.npz"):
        datasets.from_file(tmp_path / "cut.npz")
    (tmp_path / "cut.npy").write_bytes((tmp_path / "x.npy").read_bytes()[:300])
    with pytest.raises(ValueError, match=r"cut\.npy"):
        datasets.from_file(tmp_path / "cut.npy")
    X2 = X.copy()
    X2[3, 3] = np.nan
    np.save(tmp_path / "nan.npy", X2)
    with pytest.raises(ValueError, match=r"nan\.npy.*non-finite"):
        datasets.from_file(tmp_path / "nan.npy")
    np.save(tmp_path / "flat.npy", np.ones(5))
    with pytest.raises(ValueError, match=r"flat\.npy.*shape \(5,\)"):
        datasets.from_file(tmp_path / "flat.npy")
    (tmp_path / "x.csv").write_text("1,2\n")
    with pytest.raises(ValueError, match="dataset name"):
        datasets.load(tmp_path / "x.csv")


# -- preprocessing -----------------------------------------------------------------------------------


def test_recipes():
    rng = np.random.default_rng(2)
    # pixels with different means: a mean image that the authors' recipe keeps
    raw = np.clip(rng.normal(np.linspace(0.2, 0.8, 16), 0.1, (500, 16)), 0, 1)
    test = np.clip(rng.normal(np.linspace(0.3, 0.7, 16), 0.2, (100, 16)), 0, 1)
    prep = datasets.Preprocessing.fit(raw, "authors")
    A = prep(raw, np.float64)
    assert abs(A.mean()) < 1e-12 and abs(A.std() - 0.5) < 1e-12  # global scalars: x/(2 std) - mean
    M2 = A.T @ A / len(A)
    np.testing.assert_allclose(np.trace(M2) / 16, 0.25, rtol=1e-12)  # tr(Omega)/D = 1/4
    assert np.abs(A.mean(0)).max() > 0.5  # the mean image survives
    np.testing.assert_allclose(prep(test, np.float64), (test / (2 * raw.std()) - raw.mean() / (2 * raw.std())), rtol=1e-10)
    C = datasets.preprocess(raw, "centred", dtype=np.float64)
    assert np.abs(C.mean(0)).max() < 1e-12  # per-pixel centring
    np.testing.assert_allclose(np.sum(C * C) / (500 * 16), 1.0, rtol=1e-12)  # tr(Omega)/D = 1
    Ct = datasets.preprocess(test, "centred", reference=raw, dtype=np.float64)
    np.testing.assert_allclose(Ct, (test - raw.mean(0)) * np.sqrt(16 / raw.var(0).sum()), rtol=1e-10)
    np.testing.assert_array_equal(datasets.preprocess(raw, "none", dtype=np.float64), raw)
    u8 = (raw * 255).astype(np.uint8)
    np.testing.assert_allclose(datasets.preprocess(u8, "none"), u8 / 255.0, rtol=1e-6)  # uint8 -> [0, 1]
    with pytest.raises(ValueError, match="constant"):
        datasets.Preprocessing.fit(np.ones((4, 3)), "authors")


# -- natural patches ---------------------------------------------------------------------------------


def test_natural_patches_embedded_deterministic_and_disjoint():
    X = datasets.natural_patches(recipe="none")
    H = datasets.natural_patches(recipe="none", split="test")
    assert X.shape[1] == 1024 and X.shape[0] > 5000 and H.shape[0] > 500
    assert 0 <= X.min() and X.max() <= 1
    np.testing.assert_array_equal(X, datasets.natural_patches(recipe="none"))  # fixed grid, no randomness
    # no held-out patch is a training patch (they come from disjoint tiles)
    train_rows = {r.tobytes() for r in X}
    assert not any(r.tobytes() in train_rows for r in H)
    small = datasets.natural_patches(size=16, stride=16, recipe="centred", photographs=("camera.png",))
    assert small.shape[1] == 256 and small.shape[0] < 1024
    np.testing.assert_allclose(np.sum(small.astype(np.float64) ** 2) / small.size, 1.0, rtol=1e-5)


@pytest.mark.usefixtures("own_errors")
def test_natural_patches_bad_input():
    with pytest.raises(FileNotFoundError, match=r"brain\.tiff.*bundled in the wheel"):
        datasets.natural_patches(photographs=("brain.tiff",))  # fetched by pooch, never bundled
    with pytest.raises(ValueError, match="size"):
        datasets.natural_patches(size=4000)
    with pytest.raises(TypeError, match="size"):
        datasets.natural_patches(size=3.5)
    with pytest.raises(ValueError, match="heldout_fraction"):
        datasets.natural_patches(heldout_fraction=1.5)
    with pytest.raises(TypeError, match="photographs"):
        datasets.natural_patches(photographs="camera.png")
    with pytest.raises(TypeError, match="unexpected options"):
        datasets.load("patches", colour=True)


# -- streamed second moment --------------------------------------------------------------------------


def test_second_moment_streamed_equals_dense():
    rng = np.random.default_rng(3)
    X = (rng.standard_normal((301, 7)) + 5.0) * np.arange(1, 8)  # a large mean: centring must not cancel
    dense = X.T @ X / 301
    Xc = X - X.mean(0)
    for block in (1, 7, 64, 1000):
        np.testing.assert_allclose(datasets.second_moment(X, block=block), dense, rtol=1e-12)
        np.testing.assert_allclose(datasets.second_moment(X, center=True, block=block), Xc.T @ Xc / 301,
                                   rtol=1e-9, atol=1e-10)
    blocks = (X[i:i + 50].astype(np.float32) for i in range(0, 301, 50))  # any iterable of blocks
    np.testing.assert_allclose(datasets.second_moment(blocks), X.astype(np.float32).astype(np.float64).T
                               @ X.astype(np.float32).astype(np.float64) / 301, rtol=1e-12)
    cov = datasets.empirical_covariance(X)
    assert cov.n_modes == 7 and cov.eigvals.dtype == jnp.float64
    assert np.all(np.diff(np.asarray(cov.eigvals)) <= 0)
    np.testing.assert_allclose(np.asarray(cov.matrix()), dense, rtol=1e-10)
    rho = np.sort(np.linalg.eigvalsh(dense))[::-1]
    np.testing.assert_allclose(np.asarray(cov.pca_errors(3)), [rho[k:].sum() / 14 for k in range(4)], rtol=1e-10)


@pytest.mark.usefixtures("own_errors")
def test_second_moment_bad_input():
    with pytest.raises(ValueError, match="non-finite"):
        datasets.second_moment(np.array([[1.0, np.nan]]))
    with pytest.raises(ValueError, match=r"shape \(N, D\)"):
        datasets.second_moment(np.ones(3))
    with pytest.raises(ValueError, match="no data"):
        datasets.second_moment(iter([]))
    with pytest.raises(ValueError, match="every block"):
        datasets.second_moment(iter([np.ones((2, 3)), np.ones((2, 4))]))
    with pytest.raises(TypeError, match="real numbers"):
        datasets.second_moment(np.array([["a", "b"]]))
    with pytest.raises(ValueError, match="block"):
        datasets.second_moment(np.ones((3, 3)), block=0)


# -- the Dataset in the simulator --------------------------------------------------------------------

D, K = 40, 2


@pytest.fixture(scope="module")
def toy():
    cov = aedyn.spiked_covariance(jax.random.key(0), D, (3.0, 5.0))
    X = np.asarray(cov.sample(jax.random.key(4), 600, jnp.float64))
    ds = aedyn.Dataset.from_samples(X[:500], heldout=X[500:], name="toy", dtype=np.float64)
    net = aedyn.init_autoencoder(jax.random.key(1), D, K, scale=0.1, dtype=jnp.float64)
    return X, ds, net


def test_dataset_replacement_equals_manual_loop_and_array_input(toy):
    X, ds, net = toy
    block, n = 16, 45
    tr = aedyn.simulate(net, ds, key=jax.random.key(2), lr=0.3, ts=[n / D], block=block)
    step = jax.jit(lambda net, x: aedyn.sgd_step(net, x, aedyn.learning_rates(0.3, jnp.float64))[0])
    idx = np.concatenate([np.asarray(jax.random.randint(jax.random.fold_in(jax.random.key(2), b), (block,), 0, 500))
                          for b in range(-(-n // block))])
    cur = net
    for s in range(n):
        cur = step(cur, jnp.asarray(X[idx[s]]))
    np.testing.assert_allclose(np.asarray(tr.net.W), np.asarray(cur.W), rtol=1e-12, atol=1e-15)
    np.testing.assert_allclose(np.asarray(tr.net.V), np.asarray(cur.V), rtol=1e-12, atol=1e-15)
    arr = aedyn.simulate(net, X[:500], key=jax.random.key(2), lr=0.3, ts=[n / D], block=block)
    np.testing.assert_array_equal(np.asarray(arr.net.W), np.asarray(tr.net.W))
    assert arr.pmse_heldout is None and tr.pmse_heldout is not None
    # the population error uses the pool's second moment
    np.testing.assert_allclose(np.asarray(ds.covariance.matrix()), X[:500].T @ X[:500] / 500, rtol=1e-9, atol=1e-10)
    np.testing.assert_allclose(float(tr.pmse[-1]), float(aedyn.pmse(tr.net, ds.covariance)), rtol=1e-12)


def test_dataset_gaussian_sampling_is_the_covariance_stream(toy):
    _, ds, net = toy
    ts = [0.5, 2.0]
    a = aedyn.simulate(net, ds.with_sampling("gaussian"), key=jax.random.key(5), lr=0.2, ts=ts)
    b = aedyn.simulate(net, ds.covariance, key=jax.random.key(5), lr=0.2, ts=ts)
    np.testing.assert_array_equal(np.asarray(a.net.W), np.asarray(b.net.W))
    np.testing.assert_array_equal(np.asarray(a.pmse), np.asarray(b.pmse))
    assert "Gaussian samples" in a.config["data"]


@pytest.mark.usefixtures("own_errors")
def test_dataset_one_pass(toy):
    _, _, net = toy
    N = 100
    Xi = np.zeros((N, D))
    Xi[:, 0] = np.arange(N)  # each sample carries its index
    Xi[:, 1] = 1.0
    ds = aedyn.Dataset.from_samples(Xi, sampling="one-pass", dtype=np.float64)
    run = ds.for_run(jax.random.key(3), jnp.float64)
    drawn = np.concatenate([np.asarray(run.draw(jax.random.key(3), b, 16, jnp.float64))[:, 0] for b in range(7)])
    np.testing.assert_array_equal(np.sort(drawn[:N]), np.arange(N))  # every sample exactly once
    other = np.asarray(ds.for_run(jax.random.key(4), jnp.float64).order)
    assert not np.array_equal(other, np.asarray(run.order))  # the order depends on the key
    tr = aedyn.simulate(net, ds, key=jax.random.key(3), lr=0.1, ts=[N / D])
    assert int(tr.stats["steps"]) == N
    with pytest.raises(ValueError, match=r"ts: a one-pass run over N = 100 samples has at most 100 steps"):
        aedyn.simulate(net, ds, key=jax.random.key(3), lr=0.1, ts=[(N + 1) / D])


def test_dataset_heldout_error_and_table(toy, tmp_path):
    X, ds, net = toy
    tr = aedyn.simulate(net, ds, key=jax.random.key(2), lr=0.3, ts=[0.5, 3.0])
    mc, _ = aedyn.pmse_mc(tr.net, X[500:])
    np.testing.assert_allclose(float(tr.pmse_heldout[-1]), float(mc), rtol=1e-12)
    assert tr.pmse_heldout.shape == tr.pmse.shape
    tab = tr.to_table()
    assert "pmse_heldout" in tab
    tr.save_csv(tmp_path / "t.csv")
    assert "pmse_heldout" in (tmp_path / "t.csv").read_text().splitlines()[1]
    assert "dataset toy" in tr.config["data"]


def test_dataset_jit_and_vmap_over_keys_and_lr(toy):
    _, ds, net = toy
    ts = [0.25, 1.0]
    keys = jax.random.split(jax.random.key(9), 3)
    lrs = jnp.array([0.1, 0.3, 0.5])
    for s in ("replacement", "one-pass", "gaussian"):
        d = ds.with_sampling(s)
        f = jax.jit(jax.vmap(lambda k, lr, d: aedyn.simulate(net, d, key=k, lr=lr, ts=ts), in_axes=(0, 0, None)))
        out = f(keys, lrs, d)  # the dataset is an argument of the compiled function (traced), shared
        for i in range(3):
            one = aedyn.simulate(net, d, key=keys[i], lr=float(lrs[i]), ts=ts)
            np.testing.assert_allclose(np.asarray(out.pmse[i]), np.asarray(one.pmse), rtol=1e-12)
            np.testing.assert_allclose(np.asarray(out.pmse_heldout[i]), np.asarray(one.pmse_heldout), rtol=1e-12)
            np.testing.assert_allclose(np.asarray(out.net.W[i]), np.asarray(one.net.W), rtol=1e-12, atol=1e-15)


def test_dataset_checkpoint_resume(toy, tmp_path):
    _, ds, net = toy
    ts = np.array([0.2, 0.5, 1.0, 1.5, 2.0])
    ck = tmp_path / "run.npz"
    full = aedyn.simulate(net, ds, key=jax.random.key(2), lr=0.2, ts=ts)
    part = aedyn.simulate(net, ds, key=jax.random.key(2), lr=0.2, ts=ts, chunk=2, checkpoint=ck)
    again = aedyn.simulate(net, ds, key=jax.random.key(2), lr=0.2, ts=ts, chunk=2, checkpoint=ck)  # resumes (done)
    for tr in (part, again):
        np.testing.assert_array_equal(np.asarray(tr.pmse), np.asarray(full.pmse))
        np.testing.assert_array_equal(np.asarray(tr.pmse_heldout), np.asarray(full.pmse_heldout))
    other = aedyn.Dataset.from_samples(np.asarray(ds.samples)[::-1], heldout=np.asarray(ds.heldout), dtype=np.float64)
    with pytest.raises(ValueError, match="samples"):
        aedyn.simulate(net, other, key=jax.random.key(2), lr=0.2, ts=ts, chunk=2, checkpoint=ck)


@pytest.mark.usefixtures("own_errors")
def test_dataset_bad_input(toy):
    X, ds, net = toy
    with pytest.raises(ValueError, match="sampling"):
        ds.with_sampling("bootstrap")
    with pytest.raises(ValueError, match="heldout"):
        aedyn.Dataset.from_samples(X, heldout=X[:, :5])
    with pytest.raises(ValueError, match="samples.*non-finite"):
        aedyn.Dataset.from_samples(np.full((3, 4), np.inf))
    with pytest.raises(TypeError, match="samples.*real numbers"):
        aedyn.Dataset.from_samples(np.array([["a"]]))
    with pytest.raises(ValueError, match="samples"):
        aedyn.Dataset.from_samples(np.ones(4))
    with pytest.raises(TypeError, match="covariance"):
        aedyn.Dataset(X, "cov")
    with pytest.raises(ValueError, match="covariance: dimension"):
        aedyn.Dataset(X[:, :5], ds.covariance)
    small = aedyn.init_autoencoder(jax.random.key(1), 5, 2)
    with pytest.raises(ValueError, match="data: Dataset of dimension 40"):
        aedyn.simulate(small, ds, key=jax.random.key(0), ts=[1.0])
    with pytest.raises(TypeError, match="under a trace pass an aedyn.Dataset"):
        jax.jit(lambda X: aedyn.simulate(net, X, key=jax.random.key(0), ts=[1.0]).pmse)(jnp.asarray(X))
