"""Files: atomic writes with ordinary permissions, and fingerprints of what a file holds."""

import hashlib
import io
import json
import os
import tempfile

import numpy as np


def atomic_write(path, data: bytes | str) -> None:
    """Write ``data`` to ``path`` atomically (a temporary file in the same folder, then a rename).

    The file gets the permissions of a file created with ``open`` (0666 minus the umask), not the
    0600 of a temporary file. Errors name the path.
    """
    path = os.fspath(path)
    folder = os.path.dirname(os.path.abspath(path))
    mode = "wb" if isinstance(data, bytes) else "w"
    try:
        os.makedirs(folder, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=folder, prefix=".tmp-", suffix=os.path.basename(path))
    except OSError as err:
        raise OSError(err.errno, f"cannot write {path}: {err.strerror}") from None
    try:
        with os.fdopen(fd, mode) as f:
            f.write(data)
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def fingerprint(obj) -> str:
    """A SHA-256 of nested dicts, lists, arrays and JSON-able values (arrays by dtype, shape, bytes)."""
    h = hashlib.sha256()

    def feed(x):
        if isinstance(x, dict):
            for k in sorted(x):
                h.update(str(k).encode())
                feed(x[k])
        elif isinstance(x, (list, tuple)):
            h.update(f"[{len(x)}".encode())
            for v in x:
                feed(v)
        elif isinstance(x, np.ndarray) or hasattr(x, "__array__"):
            a = np.asarray(x)
            h.update(str(a.dtype).encode() + str(a.shape).encode())
            h.update(np.ascontiguousarray(a).tobytes())
        else:
            h.update(json.dumps(x, default=str, sort_keys=True).encode())

    feed(obj)
    return h.hexdigest()


def npz_bytes(arrays: dict) -> bytes:
    """The bytes of an ``.npz`` file of ``arrays`` (for :func:`atomic_write`)."""
    buf = io.BytesIO()
    np.savez(buf, **arrays)
    return buf.getvalue()


def run_folder(folder, run: dict, *, write: bool = True, what: str = "run") -> str:
    """Claim ``folder`` for the run described by ``run`` (nested dicts of JSON values and arrays):
    create it with a ``meta.json`` holding the run's fingerprint, or check that the one there is
    the same run. Refuses a file, an unreadable ``meta.json`` and another run, naming the folder.
    Returns the fingerprint. ``write=False``: check only (e.g. a process other than 0)."""
    folder = os.fspath(folder)
    if os.path.exists(folder) and not os.path.isdir(folder):
        raise ValueError(f"out: {folder} exists and is not a folder")
    fp = fingerprint(run)
    path = os.path.join(folder, "meta.json")
    if os.path.exists(path):
        try:
            with open(path) as f:
                old = json.load(f).get("fingerprint")
        except (OSError, ValueError, AttributeError) as err:
            raise ValueError(f"out: {path} is not a {what}'s meta.json ({err}); choose another folder") from err
        if old != fp:
            raise ValueError(f"out: {folder} holds a different {what} (other configurations or settings); "
                             "remove it or choose another folder")
    elif write:
        meta = run.get("meta", {})
        atomic_write(path, json.dumps({**meta, "fingerprint": fp}, indent=1, default=str))
    return fp
