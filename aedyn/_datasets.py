"""Image datasets as float arrays (N, D), from local files only (docs/theory.md §9).

Sources:

- ``"patches"``: natural image patches cut from photographs that ship inside the scikit-image
  wheel (read from its data folder, never downloaded): grayscale, ``size`` x ``size`` pixels
  (D = 1024 by default) on a fixed grid of step ``stride``; the held-out patches come from a fixed
  random sixth of the tiles of every photograph, and none overlaps a training patch.
- ``"fashion-mnist"`` and ``"mnist"``: the standard IDX files (gzipped or not) in a folder the user
  gives; ``/usr/share/datasets/fashion-mnist`` (Debian's ``dataset-fashion-mnist``) is found
  without one. D = 784, the official train (60,000) / test (10,000) split.
- ``"cifar10"``: CIFAR-10 in grayscale (D = 1024) from the official binary batches
  (``data_batch_1.bin`` ...) or the official Python batches (pickles, read with an unpickler that
  admits only the NumPy array types a batch holds and executes nothing from the file).
- a ``.npy`` / ``.npz`` file of samples (N, D) or images (N, H, W[, C]) (no pickles); an ``.npz``
  with arrays ``train`` and ``test`` gives its own split, otherwise a fixed sixth is held out.

Preprocessing (:class:`Preprocessing`; pixels first as floats in [0, 1], colour to grayscale with
``skimage.color.rgb2gray``, images flattened row by row), fitted on the training split and applied
to both splits:

- ``"authors"``, the recipe of the paper's code: x <- x / (2 std), then x <- x - mean, with the
  global standard deviation and mean over all pixels of all training images (scalars), so the
  mean image survives as a large top eigenvalue of the uncentred Omega; tr(Omega)/D = 1/4.
- ``"centred"``: the per-pixel mean image subtracted, then one global scale so that
  tr(Omega)/D = 1 (Omega is then the covariance).
- ``"none"``: the pixels in [0, 1].

Errors name the file and what was expected; a corrupt, truncated or foreign file is refused as a
whole (nothing is returned from it).
"""

import dataclasses
import gzip
import os
import pickle
import zipfile
import zlib

import numpy as np
from jaxtyping import Float, Real, UInt8

from ._dataset import Dataset

#: The photographs of the embedded natural-patch dataset: the natural scenes and textures that
#: ship as lossless PNG files inside the scikit-image wheel (JPEG files are left out: decoders
#: differ in the last bit, and the patches must be the same everywhere).
PHOTOGRAPHS = (
    "astronaut.png", "brick.png", "camera.png", "chelsea.png", "coffee.png",
    "coins.png", "grass.png", "gravel.png", "moon.png", "motorcycle_left.png",
)
#: Preprocessing recipes (module docstring).
RECIPES = ("authors", "centred", "none")
#: Splits a loader returns.
SPLITS = ("train", "test", "all")
#: Dataset names of :func:`load` (besides a path to a .npy/.npz file).
NAMES = ("patches", "fashion-mnist", "mnist", "cifar10")
#: Folders searched for Fashion-MNIST when none is given.
FASHION_MNIST_FOLDERS = ("/usr/share/datasets/fashion-mnist",)
#: The largest IDX payload read (a header that declares more is refused before reading).
IDX_MAX_BYTES = 2**31
#: Rows per block when converting and preprocessing (bounds the float64 temporaries).
ROWS = 8192

_ALIASES = {"fmnist": "fashion-mnist", "fashion_mnist": "fashion-mnist", "fashionmnist": "fashion-mnist",
            "cifar-10": "cifar10", "cifar_10": "cifar10", "natural-patches": "patches", "natural_patches": "patches"}


# -- helpers ---------------------------------------------------------------------------------------


def _check_choice(value, name, choices):
    if not isinstance(value, str) or value not in choices:
        raise ValueError(f"{name}: expected one of {', '.join(map(repr, choices))}, got {value!r}")
    return value


def _unit(block) -> np.ndarray:
    """Pixels as float64: uint8 in [0, 255] -> [0, 1]; other numbers unchanged."""
    block = np.asarray(block)
    if block.dtype == np.uint8:
        return block.astype(np.float64) / 255.0
    return block.astype(np.float64, copy=False)


def _gray_flat(images, path: str, what: str) -> np.ndarray:
    """(N, D) float32 in [0, 1] (uint8) of images (N, H, W) or (N, H, W, 3|4); (N, D) passes through."""
    from skimage.color import rgb2gray, rgba2rgb

    a = np.asarray(images)
    if a.dtype.kind not in "biuf":
        raise ValueError(f"{path}: {what} has dtype {a.dtype}, expected numbers")
    if a.ndim == 2:
        return a if a.dtype.kind == "f" else _unit(a).astype(np.float32)
    if a.ndim == 3:
        out = np.empty((a.shape[0], a.shape[1] * a.shape[2]), np.float32)
        for i in range(0, a.shape[0], ROWS):
            out[i:i + ROWS] = _unit(a[i:i + ROWS]).reshape(-1, out.shape[1])
        return out
    if a.ndim == 4 and a.shape[-1] in (3, 4):
        out = np.empty((a.shape[0], a.shape[1] * a.shape[2]), np.float32)
        for i in range(0, a.shape[0], ROWS):
            blk = _unit(a[i:i + ROWS])
            if a.shape[-1] == 4:
                blk = rgba2rgb(blk, channel_axis=-1)
            out[i:i + ROWS] = rgb2gray(blk, channel_axis=-1).reshape(-1, out.shape[1])
        return out
    raise ValueError(f"{path}: {what} has shape {a.shape}; expected samples (N, D), grayscale images (N, H, W) "
                     "or colour images (N, H, W, 3 or 4)")


# -- preprocessing ---------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Preprocessing:
    """A fitted preprocessing: x -> scale * (x - mean) - shift, pixels x as floats in [0, 1].

    ``authors``: mean = None, scale = 1 / (2 std), shift = scale * (global mean) (scalars of the
    training pixels). ``centred``: mean = the per-pixel mean image, scale such that
    tr(Omega)/D = 1 on the training data, shift = 0. ``none``: the identity.
    """

    recipe: str
    scale: float = 1.0
    shift: float = 0.0
    mean: np.ndarray | None = None

    @classmethod
    def fit(cls, X: Real[np.ndarray, "N D"], recipe: str = "authors") -> "Preprocessing":
        """The statistics of ``recipe`` on the training data X (N, D) (streamed, float64)."""
        _check_choice(recipe, "recipe", RECIPES)
        X = np.asarray(X)
        if X.ndim != 2 or X.shape[0] < 1:
            raise ValueError(f"X: expected training data of shape (N, D), got {X.shape}")
        if recipe == "none":
            return cls("none")
        n, D = X.shape
        s1 = np.zeros(D)
        s2 = 0.0
        for i in range(0, n, ROWS):
            B = _unit(X[i:i + ROWS])
            s1 += B.sum(0)
            s2 += float(np.sum(B * B))
        mu = s1 / n
        if recipe == "authors":
            m = float(mu.mean())
            var = s2 / (n * D) - m * m
            if not var > 0:
                raise ValueError("X: the data is constant (zero standard deviation); the authors' recipe divides by it")
            scale = 1.0 / (2.0 * np.sqrt(var))
            return cls("authors", float(scale), float(scale * m), None)
        total = s2 / n - float(mu @ mu)  # sum of the per-pixel variances = tr(covariance)
        if not total > 0:
            raise ValueError("X: every pixel is constant (zero variance); per-pixel centring cannot scale it")
        return cls("centred", float(np.sqrt(D / total)), 0.0, mu)

    def __call__(self, X: Real[np.ndarray, "N D"], dtype=np.float32) -> Float[np.ndarray, "N D"]:
        """The preprocessed data, in ``dtype`` (converted in blocks)."""
        X = np.asarray(X)
        out = np.empty(X.shape, dtype)
        for i in range(0, X.shape[0], ROWS):
            B = _unit(X[i:i + ROWS])
            if self.mean is not None:
                B = B - self.mean
            out[i:i + ROWS] = self.scale * B - self.shift
        return out

    def describe(self) -> tuple:
        """The statistics as a tuple of (name, value) pairs (JSON-able, hashable)."""
        out = [("recipe", self.recipe), ("scale", self.scale), ("shift", self.shift)]
        if self.mean is not None:
            out.append(("mean_image_norm", float(np.linalg.norm(self.mean))))
        return tuple(out)


def preprocess(
    X: Real[np.ndarray, "N D"], recipe: str = "authors", *, reference: Real[np.ndarray, "n D"] | None = None,
    dtype=np.float32,
) -> Float[np.ndarray, "N D"]:
    """X preprocessed by ``recipe`` with the statistics of ``reference`` (default: X itself)."""
    return Preprocessing.fit(X if reference is None else reference, recipe)(X, dtype)


# -- file formats ----------------------------------------------------------------------------------


def _existing_file(path) -> str:
    path = os.fspath(path)
    if not os.path.exists(path):
        raise FileNotFoundError(f"{path}: no such file")
    if not os.path.isfile(path):
        raise ValueError(f"{path}: not a regular file")
    return path


def _is_gzip(path: str) -> bool:
    with open(path, "rb") as f:
        return f.read(2) == b"\x1f\x8b"


_IDX_TYPES = {0x08: np.dtype(np.uint8), 0x09: np.dtype(np.int8), 0x0B: np.dtype(">i2"), 0x0C: np.dtype(">i4"),
              0x0D: np.dtype(">f4"), 0x0E: np.dtype(">f8")}


def read_idx(path: str | os.PathLike) -> np.ndarray:
    """An IDX file (the MNIST format; gzipped or not): its array, in native byte order.

    The header (two zero bytes, a type code, the number of dimensions, the dimensions as big-endian
    32-bit integers) must describe exactly the bytes that follow; a truncated file, trailing bytes,
    an unknown type code or corrupt gzip data is refused, naming the file.
    """
    path = _existing_file(path)
    gz = _is_gzip(path)
    try:
        with (gzip.open(path, "rb") if gz else open(path, "rb")) as f:
            head = f.read(4)
            if len(head) < 4:
                raise ValueError(f"{path}: truncated IDX file ({len(head)} bytes, no complete header)")
            if head[0] != 0 or head[1] != 0 or head[2] not in _IDX_TYPES or not 1 <= head[3] <= 8:
                raise ValueError(f"{path}: not an IDX file (header {head.hex()}; expected 00 00, a type code "
                                 f"among {', '.join(f'{c:#04x}' for c in _IDX_TYPES)} and 1-8 dimensions)")
            dtype, ndim = _IDX_TYPES[head[2]], head[3]
            raw_dims = f.read(4 * ndim)
            if len(raw_dims) < 4 * ndim:
                raise ValueError(f"{path}: truncated IDX file (the header declares {ndim} dimensions)")
            dims = tuple(int(d) for d in np.frombuffer(raw_dims, ">u4"))
            nbytes = int(np.prod(dims, dtype=np.int64)) * dtype.itemsize
            if nbytes > IDX_MAX_BYTES:
                raise ValueError(f"{path}: the header declares an array {dims} of {nbytes} bytes, more than "
                                 f"{IDX_MAX_BYTES} bytes; not a dataset file aedyn reads")
            if not gz:
                size = os.path.getsize(path)
                if size != 4 + 4 * ndim + nbytes:
                    what = "truncated" if size < 4 + 4 * ndim + nbytes else "has trailing bytes"
                    raise ValueError(f"{path}: {what}: the header declares an array {dims} ({nbytes} bytes of data), "
                                     f"the file holds {size - 4 - 4 * ndim}")
            data = f.read(nbytes)
            if len(data) < nbytes:
                raise ValueError(f"{path}: truncated: the header declares an array {dims} ({nbytes} bytes of data), "
                                 f"the file holds {len(data)}")
            if f.read(1):
                raise ValueError(f"{path}: has trailing bytes after the array {dims} its header declares")
    except (OSError, EOFError, zlib.error) as err:
        if isinstance(err, FileNotFoundError):
            raise
        raise ValueError(f"{path}: corrupt {'gzip ' if gz else ''}data: {err}") from None
    return np.frombuffer(data, dtype).reshape(dims).astype(dtype.newbyteorder("="))


#: Bytes of one record of a CIFAR-10 binary batch: a label byte and 3 x 32 x 32 pixel bytes.
CIFAR_RECORD = 1 + 3 * 32 * 32


def _check_labels(labels, n, path):
    labels = np.asarray(labels)
    if labels.shape != (n,):
        raise ValueError(f"{path}: {labels.shape} labels for {n} images; not a CIFAR-10 batch")
    if labels.size and (labels.min() < 0 or labels.max() > 9):
        bad = int(np.nonzero((labels < 0) | (labels > 9))[0][0])
        raise ValueError(f"{path}: label {labels[bad]} of record {bad} is not a CIFAR-10 class (0-9); "
                         "not a CIFAR-10 batch")


def read_cifar_binary(path: str | os.PathLike) -> UInt8[np.ndarray, "N 32 32 3"]:
    """A CIFAR-10 binary batch (``data_batch_1.bin`` ...): images (N, 32, 32, 3) uint8, RGB.

    Each record is one label byte (0-9) and 3072 pixel bytes (the red, green and blue 32 x 32
    planes, row by row). A size that is not a whole number of records (a truncated file) or a
    label outside 0-9 is refused.
    """
    path = _existing_file(path)
    size = os.path.getsize(path)
    if size == 0 or size % CIFAR_RECORD:
        raise ValueError(f"{path}: {size} bytes is not a whole number of CIFAR-10 records ({CIFAR_RECORD} bytes: "
                         "1 label byte + 3072 pixel bytes); the file is truncated or not a CIFAR-10 binary batch")
    raw = np.fromfile(path, np.uint8)
    if raw.size != size:
        raise ValueError(f"{path}: read {raw.size} of {size} bytes")
    raw = raw.reshape(-1, CIFAR_RECORD)
    _check_labels(raw[:, 0], raw.shape[0], path)
    return np.ascontiguousarray(raw[:, 1:].reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1))


def _latin1_encode(obj, encoding="utf-8", errors="strict"):
    """``_codecs.encode`` as Python 3 pickles bytes at protocol 2: admitted for str -> latin-1 only."""
    if not isinstance(obj, str) or encoding not in ("latin1", "latin-1") or errors != "strict":
        raise pickle.UnpicklingError(f"_codecs.encode is admitted only to rebuild bytes (latin-1), got {encoding!r}")
    return obj.encode("latin1")


def _admitted_globals() -> dict:
    """The only globals a CIFAR-10 Python batch refers to: NumPy's array reconstruction."""
    reconstruct = np.ndarray(0).__reduce__()[0]  # numpy(._)core.multiarray._reconstruct
    frombuffer = np.zeros(1).__reduce_ex__(5)[0]  # numpy(._)core.numeric._frombuffer (protocol 5)
    out = {("numpy", "ndarray"): np.ndarray, ("numpy", "dtype"): np.dtype, ("_codecs", "encode"): _latin1_encode}
    for core in ("numpy.core", "numpy._core"):
        out[(f"{core}.multiarray", "_reconstruct")] = reconstruct
        out[(f"{core}.numeric", "_frombuffer")] = frombuffer
    return out


class ForbiddenGlobal(pickle.UnpicklingError):
    """A pickle refers to a global that a data file never needs (it could run code): refused."""


class _CifarUnpickler(pickle.Unpickler):
    """Resolves only the globals of :func:`_admitted_globals`; anything else is refused before it
    can be called, so nothing from the file executes."""

    _admitted = None

    def find_class(self, module, name):
        if _CifarUnpickler._admitted is None:
            _CifarUnpickler._admitted = _admitted_globals()
        found = _CifarUnpickler._admitted.get((module, name))
        if found is None:
            raise ForbiddenGlobal(f"{module}.{name}")
        return found

    def persistent_load(self, pid):
        raise pickle.UnpicklingError("persistent ids are not admitted")


def _get(d: dict, key: str):
    return d.get(key.encode(), d.get(key))


def read_cifar_python(path: str | os.PathLike) -> UInt8[np.ndarray, "N 32 32 3"]:
    """A CIFAR-10 Python batch (``data_batch_1`` ..., a pickle): images (N, 32, 32, 3) uint8, RGB.

    Read with a restricted unpickler (``pickle.Unpickler.find_class``) that admits only NumPy's
    array reconstruction (``ndarray``, ``dtype``, ``_reconstruct``, ``_frombuffer``) and the
    latin-1 ``_codecs.encode`` of bytes: a pickle that refers to anything else (which could run
    code) is refused before anything from it is called. The result must be a dict whose ``data``
    is a uint8 array (N, 3072) and whose ``labels`` are N classes 0-9; trailing bytes are refused.
    """
    path = _existing_file(path)
    try:
        with open(path, "rb") as f:
            obj = _CifarUnpickler(f, encoding="bytes").load()
            trailing = f.read(1)
    except ForbiddenGlobal as err:
        raise ValueError(f"{path}: refused: the pickle refers to {err}, which a CIFAR-10 batch never does "
                         "(it could run code; nothing from the file was executed)") from None
    except Exception as err:  # noqa: BLE001 - any malformed pickle (EOFError, UnpicklingError, ...)
        raise ValueError(f"{path}: not a readable CIFAR-10 Python batch (truncated or corrupt pickle: "
                         f"{type(err).__name__}: {err})") from None
    if trailing:
        raise ValueError(f"{path}: has trailing bytes after the pickle; not a CIFAR-10 Python batch")
    if not isinstance(obj, dict):
        raise ValueError(f"{path}: the pickle holds a {type(obj).__name__}, a CIFAR-10 batch holds a dict")
    data = _get(obj, "data")
    if not isinstance(data, np.ndarray) or data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != 3072:
        what = f"{data.dtype} array {data.shape}" if isinstance(data, np.ndarray) else type(data).__name__
        raise ValueError(f"{path}: 'data' is a {what}; a CIFAR-10 batch holds a uint8 array (N, 3072)")
    labels = _get(obj, "labels")
    if labels is None:
        raise ValueError(f"{path}: no 'labels' (a CIFAR-100 file has 'fine_labels'); not a CIFAR-10 batch")
    if not isinstance(labels, (list, np.ndarray)) or not all(isinstance(v, (int, np.integer)) for v in labels):
        raise ValueError(f"{path}: 'labels' must be a list of integers")
    _check_labels(np.asarray(labels, np.int64), data.shape[0], path)
    return np.ascontiguousarray(data.reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1))


def read_array(path: str | os.PathLike, key: str | None = None) -> dict:
    """The arrays of a ``.npy`` or ``.npz`` file, loaded without pickles: ``{"train": a}`` or, for an
    ``.npz`` with arrays ``train`` and ``test``, both. ``key`` picks one array of an ``.npz``."""
    path = _existing_file(path)
    ext = os.path.splitext(path)[1].lower()
    if ext not in (".npy", ".npz"):
        raise ValueError(f"{path}: expected a .npy or .npz file")
    try:
        obj = np.load(path, allow_pickle=False)
        if ext == ".npy":
            if not isinstance(obj, np.ndarray):
                raise ValueError("not a .npy array")
            return {"train": obj}
        if not isinstance(obj, np.lib.npyio.NpzFile):
            raise ValueError("not an .npz archive")
        with obj as z:
            keys = list(z.files)
            if key is not None:
                if key not in keys:
                    raise KeyError(f"no array {key!r} (it holds {', '.join(keys) or 'nothing'})")
                return {"train": z[key]}
            if "train" in keys and "test" in keys:
                return {"train": z["train"], "test": z["test"]}
            if len(keys) == 1:
                return {"train": z[keys[0]]}
            raise KeyError(f"holds several arrays ({', '.join(keys) or 'none'}): pick one with key=, or name them "
                           "'train' and 'test'")
    except ValueError as err:
        msg = str(err)
        if "pickle" in msg.lower() or "object arrays" in msg.lower():
            raise ValueError(f"{path}: holds Python objects (a pickle) or is no NumPy file at all; aedyn does "
                             "not load pickles: save plain numeric arrays with numpy.save / numpy.savez") from None
        raise ValueError(f"{path}: not a readable {ext} file: {msg}") from None
    except KeyError as err:
        raise ValueError(f"{path}: {err.args[0]}") from None
    except (OSError, EOFError, zipfile.BadZipFile, zlib.error) as err:
        raise ValueError(f"{path}: corrupt or truncated {ext} file: {err}") from None


# -- sources: (train, test, meta) in [0, 1] pixels or as stored ------------------------------------


def _photograph(name: str) -> np.ndarray:
    import skimage
    import skimage.data
    import skimage.io
    from skimage.color import rgb2gray, rgba2rgb

    folder = os.path.dirname(skimage.data.__file__)
    path = os.path.join(folder, os.path.basename(name))
    if not os.path.isfile(path):
        raise FileNotFoundError(f"{path}: the photograph {name!r} is not in this scikit-image installation "
                                f"({skimage.__version__}); aedyn reads only the images bundled in the wheel")
    img = np.asarray(skimage.io.imread(path))
    if img.ndim == 3 and img.shape[-1] == 4:
        img = rgba2rgb(img)
    if img.ndim == 3:
        return rgb2gray(img)
    if img.ndim == 2:
        return _unit(img)
    raise ValueError(f"{path}: an image of shape {img.shape}, expected grayscale or colour")


def _patches(size, stride, photographs, heldout_fraction, tile):
    from skimage.util import view_as_windows

    from ._checks import check_int, check_number

    size = check_int(size, "size", lo=2)
    stride = check_int(stride, "stride", lo=1)
    tile = size * 2 if tile is None else check_int(tile, "tile", lo=1)
    check_number(heldout_fraction, "heldout_fraction", lo=0.0, hi=1.0, hi_open=True)
    if isinstance(photographs, str) or not photographs or not all(isinstance(p, str) for p in photographs):
        raise TypeError(f"photographs: expected a non-empty sequence of file names, got {photographs!r}")
    photographs = tuple(photographs)
    rng = np.random.default_rng(0)  # the fixed held-out tiles, the same everywhere
    parts = {"train": [], "test": []}
    for name in photographs:
        img = _photograph(name)
        H, W = img.shape
        held = rng.random((-(-H // tile), -(-W // tile))) < heldout_fraction
        mask = np.repeat(np.repeat(held, tile, 0), tile, 1)[:H, :W]
        if H < size or W < size:
            continue
        win = view_as_windows(np.ascontiguousarray(img), (size, size), step=stride).reshape(-1, size * size)
        n_held = view_as_windows(mask, (size, size), step=stride).sum((-1, -2)).reshape(-1)
        parts["train"].append(win[n_held == 0].astype(np.float32))
        parts["test"].append(win[n_held == size * size].astype(np.float32))
    train = np.concatenate(parts["train"]) if parts["train"] else np.zeros((0, size * size), np.float32)
    test = np.concatenate(parts["test"]) if parts["test"] else np.zeros((0, size * size), np.float32)
    if train.shape[0] == 0:
        raise ValueError(f"size: no {size} x {size} training patch fits in the photographs")
    import skimage

    meta = {"name": "patches", "source": f"scikit-image {skimage.__version__} photographs",
            "photographs": ",".join(photographs), "patch": size, "stride": stride, "tile": tile,
            "heldout_fraction": float(heldout_fraction)}
    return train, test, meta


def _find_idx(folder, stem: str):
    for sub in ("", "raw"):
        for ext in ("", ".gz"):
            p = os.path.join(folder, sub, stem + ext)
            if os.path.isfile(p):
                return p
    return None


def _mnist_like(name: str, folder):
    title = {"fashion-mnist": "Fashion-MNIST", "mnist": "MNIST"}[name]
    candidates = []
    if folder is not None:
        folder = os.fspath(folder)
        if not os.path.isdir(folder):
            raise FileNotFoundError(f"{folder}: no such folder (expected the {title} IDX files in it)")
        candidates = [folder, os.path.join(folder, "FashionMNIST" if name == "fashion-mnist" else "MNIST")]
    elif name == "fashion-mnist":
        candidates = list(FASHION_MNIST_FOLDERS)
    found = None
    for c in candidates:
        if _find_idx(c, "train-images-idx3-ubyte") and _find_idx(c, "t10k-images-idx3-ubyte"):
            found = c
            break
    if found is None:
        where = ", ".join(candidates) if candidates else "(no folder given)"
        hint = " (on Debian: apt-get install dataset-fashion-mnist)" if name == "fashion-mnist" else ""
        raise FileNotFoundError(
            f"{title}: train-images-idx3-ubyte[.gz] and t10k-images-idx3-ubyte[.gz] not found in {where}; "
            f"pass folder= the folder that holds them{hint}"
        )
    out = []
    for stem in ("train-images-idx3-ubyte", "t10k-images-idx3-ubyte"):
        path = _find_idx(found, stem)
        a = read_idx(path)
        if a.ndim != 3 or a.dtype != np.uint8:
            raise ValueError(f"{path}: an IDX array {a.dtype} {a.shape}; {title} images are uint8 (N, 28, 28)")
        out.append(a.reshape(a.shape[0], -1))
    return out[0], out[1], {"name": name, "source": os.path.abspath(found)}


def _cifar10(folder):
    if folder is None:
        raise FileNotFoundError("cifar10: pass folder= the folder of the official CIFAR-10 batches "
                                "(cifar-10-batches-bin or cifar-10-batches-py)")
    folder = os.fspath(folder)
    if not os.path.isdir(folder):
        raise FileNotFoundError(f"{folder}: no such folder (expected the CIFAR-10 batches in it)")
    for sub in ("", "cifar-10-batches-bin", "cifar-10-batches-py"):
        base = os.path.join(folder, sub)
        for ext, reader, kind in ((".bin", read_cifar_binary, "binary"), ("", read_cifar_python, "python")):
            names = [f"data_batch_{i}{ext}" for i in range(1, 6)] + [f"test_batch{ext}"]
            if os.path.isfile(os.path.join(base, names[0])):
                missing = [n for n in names if not os.path.isfile(os.path.join(base, n))]
                if missing:
                    raise FileNotFoundError(f"{base}: the CIFAR-10 {kind} batches are incomplete: missing "
                                            f"{', '.join(missing)}")
                parts = [reader(os.path.join(base, n)) for n in names]  # all read before anything returns
                train = _gray_flat(np.concatenate(parts[:5]), base, "CIFAR-10")
                test = _gray_flat(parts[5], base, "CIFAR-10")
                return train, test, {"name": "cifar10", "source": os.path.abspath(base), "format": kind}
    raise FileNotFoundError(f"{folder}: no CIFAR-10 batches (data_batch_1.bin ... test_batch.bin, or the Python "
                            "batches data_batch_1 ... test_batch) in it or in cifar-10-batches-bin/-py")


def _array_file(path, key, heldout_fraction):
    from ._checks import check_number

    check_number(heldout_fraction, "heldout_fraction", lo=0.0, hi=1.0, hi_open=True)
    arrays = read_array(path, key)
    p = os.fspath(path)
    for k, a in arrays.items():
        if a.dtype.kind not in "biuf":
            raise ValueError(f"{p}: the array {k!r} has dtype {a.dtype}, expected numbers")
        if a.ndim < 2 or a.shape[0] < 1:
            raise ValueError(f"{p}: the array {k!r} has shape {a.shape}, expected samples (N, D) or images (N, H, W[, C])")
        if a.dtype.kind == "f" and not np.all(np.isfinite(a)):
            raise ValueError(f"{p}: the array {k!r} contains non-finite values")
    train = _gray_flat(arrays["train"], p, "the array")
    meta = {"name": os.path.basename(p), "source": os.path.abspath(p)}
    if "test" in arrays:
        test = _gray_flat(arrays["test"], p, "the array 'test'")
        if test.shape[1] != train.shape[1]:
            raise ValueError(f"{p}: 'train' has D = {train.shape[1]}, 'test' D = {test.shape[1]}")
        return train, test, meta
    n = train.shape[0]
    n_test = int(np.ceil(n * heldout_fraction)) if heldout_fraction > 0 else 0
    if n - n_test < 1:
        raise ValueError(f"{p}: {n} samples are too few to hold out a fraction {heldout_fraction}")
    perm = np.random.default_rng(0).permutation(n)  # a fixed split, the same everywhere
    meta["split"] = f"fixed permutation (seed 0), held-out fraction {heldout_fraction:g}"
    return train[np.sort(perm[n_test:])], train[np.sort(perm[:n_test])], meta


def _source(name, folder=None, **kw):
    """(train, test, meta) of a dataset name or a .npy/.npz path, before preprocessing."""
    if not isinstance(name, (str, os.PathLike)):
        raise TypeError(f"name: expected a dataset name ({', '.join(NAMES)}) or a .npy/.npz path, got {name!r}")
    text = os.fspath(name)
    key = _ALIASES.get(text.lower(), text.lower())
    if key == "patches":
        opts = {k: kw.pop(k) for k in ("size", "stride", "photographs", "heldout_fraction", "tile") if k in kw}
        out = _patches(opts.get("size", 32), opts.get("stride", 16), opts.get("photographs", PHOTOGRAPHS),
                       opts.get("heldout_fraction", 1 / 6), opts.get("tile"))
    elif key in ("fashion-mnist", "mnist"):
        out = _mnist_like(key, folder)
    elif key == "cifar10":
        out = _cifar10(folder)
    elif text.lower().endswith((".npy", ".npz")):
        out = _array_file(text, kw.pop("key", None), kw.pop("heldout_fraction", 1 / 6))
    else:
        raise ValueError(f"name: expected a dataset name ({', '.join(NAMES)}) or a path to a .npy/.npz file, "
                         f"got {text!r}")
    if kw:
        raise TypeError(f"unexpected options for {text!r}: {', '.join(sorted(kw))}")
    return out


def _split(train, test, split, prep, dtype, where):
    _check_choice(split, "split", SPLITS)
    if split == "test" and test.shape[0] == 0:
        raise ValueError(f"split: {where} has no held-out samples")
    parts = {"train": [train], "test": [test], "all": [train, test]}[split]
    return np.concatenate([prep(p, dtype) for p in parts if p.shape[0]])


def _loader(name, folder, split, recipe, dtype, **kw):
    _check_choice(recipe, "recipe", RECIPES)
    train, test, meta = _source(name, folder, **kw)
    return _split(train, test, split, Preprocessing.fit(train, recipe), dtype, meta["name"])


def natural_patches(
    *, split: str = "train", recipe: str = "authors", size: int = 32, stride: int = 16,
    photographs=PHOTOGRAPHS, heldout_fraction: float = 1 / 6, tile: int | None = None, dtype=np.float32,
) -> Float[np.ndarray, "N D"]:
    """Natural image patches (N, size^2) from the photographs in the scikit-image wheel.

    Each photograph (:data:`PHOTOGRAPHS`) in grayscale (``skimage.color.rgb2gray``), pixels in
    [0, 1], cut into ``size`` x ``size`` patches on a fixed grid of step ``stride``, in
    photograph order, row by row. The held-out split: every photograph is divided into tiles of
    ``tile`` pixels (default 2 x size) and a fixed random ``heldout_fraction`` of the tiles
    (NumPy's generator, seed 0) is held out; a patch inside held-out tiles only is a test patch,
    inside training tiles only a training patch, and a patch across both is dropped (no test
    patch overlaps a training patch; both splits sample every photograph). ``recipe`` is fitted
    on the training patches (module docstring). Deterministic, no download.
    """
    return _loader("patches", None, split, recipe, dtype, size=size, stride=stride, photographs=photographs,
                   heldout_fraction=heldout_fraction, tile=tile)


def fashion_mnist(
    folder: str | os.PathLike | None = None, *, split: str = "train", recipe: str = "authors", dtype=np.float32
) -> Float[np.ndarray, "N 784"]:
    """Fashion-MNIST images (N, 784) from the IDX files in ``folder`` (default: found in
    :data:`FASHION_MNIST_FOLDERS`, e.g. Debian's ``dataset-fashion-mnist``); ``recipe`` fitted on
    the 60,000 training images."""
    return _loader("fashion-mnist", folder, split, recipe, dtype)


def mnist(
    folder: str | os.PathLike, *, split: str = "train", recipe: str = "authors", dtype=np.float32
) -> Float[np.ndarray, "N 784"]:
    """MNIST images (N, 784) from the IDX files in ``folder``; ``recipe`` fitted on the training images."""
    return _loader("mnist", folder, split, recipe, dtype)


def cifar10(
    folder: str | os.PathLike, *, split: str = "train", recipe: str = "authors", dtype=np.float32
) -> Float[np.ndarray, "N 1024"]:
    """CIFAR-10 in grayscale (N, 1024) from the official binary or Python batches in ``folder``
    (or its ``cifar-10-batches-bin`` / ``-py``); ``recipe`` fitted on the 50,000 training images."""
    return _loader("cifar10", folder, split, recipe, dtype)


def from_file(
    path: str | os.PathLike, *, key: str | None = None, split: str = "train", recipe: str = "authors",
    heldout_fraction: float = 1 / 6, dtype=np.float32,
) -> Float[np.ndarray, "N D"]:
    """Samples (N, D) from a ``.npy``/``.npz`` file (images are made grayscale and flattened)."""
    return _loader(path, None, split, recipe, dtype, key=key, heldout_fraction=heldout_fraction)


def load(
    name: str | os.PathLike = "patches",
    *,
    folder: str | os.PathLike | None = None,
    recipe: str = "authors",
    sampling: str = "replacement",
    heldout: bool = True,
    dtype: type | np.dtype | str = np.float32,
    **options: object,
) -> Dataset:
    """A :class:`~aedyn.Dataset` for the simulator and the theory: the preprocessed training split
    as the pool, its empirical second moment (float64, all D modes) and the preprocessed test split
    as held-out samples.

    Args:
        name: ``"patches"`` (embedded, the default), ``"fashion-mnist"``, ``"mnist"``,
            ``"cifar10"``, or a path to a ``.npy``/``.npz`` file.
        folder: where the files of ``fashion-mnist``, ``mnist`` or ``cifar10`` are.
        recipe: ``"authors"``, ``"centred"`` or ``"none"`` (module docstring), fitted on the
            training split and applied to both.
        sampling: how SGD draws from the pool: ``"replacement"``, ``"one-pass"``, ``"gaussian"``.
        heldout: keep the test split as held-out samples.
        dtype: storage dtype of the samples (float32 by default).
        options: of the source: ``size``, ``stride``, ``photographs``, ``heldout_fraction``
            (patches), ``key``, ``heldout_fraction`` (.npy/.npz).
    """
    _check_choice(recipe, "recipe", RECIPES)
    train, test, meta = _source(name, folder, **options)
    prep = Preprocessing.fit(train, recipe)
    X = prep(train, dtype)
    H = prep(test, dtype) if heldout and test.shape[0] else None
    del train, test
    info = dict(meta)
    info.update(prep.describe())
    return Dataset.from_samples(X, heldout=H, sampling=sampling, name=meta["name"],
                                info=tuple((k, v) for k, v in info.items() if k != "name"), dtype=dtype)
