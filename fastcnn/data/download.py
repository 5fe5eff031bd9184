"""Downloading MNIST or Fashion-MNIST, verified against published SHA-256 checksums: :func:`download_mnist`.

Every file reaches its folder through :func:`fastcnn._util.atomic_write`
and only once its checksum matched, so an interrupted or corrupt download
never leaves half a file or a wrong one behind.
"""

import hashlib
import os
import urllib.error
import urllib.request
from pathlib import Path

from .._util import atomic_write

__all__ = ["download_mnist", "MNIST_SHA256", "FASHION_MNIST_SHA256"]

#: Published SHA-256 of the four MNIST archives (as served by the TensorFlow
#: mirror and yann.lecun.com; the same checksums torchvision and TFDS pin).
MNIST_SHA256 = {
    "train-images-idx3-ubyte.gz": "440fcabf73cc546fa21475e81ea370265605f56be210a4024d2ca8f203523609",
    "train-labels-idx1-ubyte.gz": "3552534a0a558bbed6aed32b30c495cca23d567ec52cac8be1a0730e8010255c",
    "t10k-images-idx3-ubyte.gz": "8d422c7b0a1c1c79245a5bcf07fe86e33eeafee792b84584aec276f5a2dbc4e6",
    "t10k-labels-idx1-ubyte.gz": "f7ae60f92e00ec6debd23a6088c31dbd2371eca3ffa0defaefb259924204aec6",
}

#: Published SHA-256 of the four Fashion-MNIST archives (zalandoresearch/fashion-mnist).
FASHION_MNIST_SHA256 = {
    "train-images-idx3-ubyte.gz": "3aede38d61863908ad78613f6a32ed271626dd12800ba2636569512369268a84",
    "train-labels-idx1-ubyte.gz": "a04f17134ac03560a47e3764e11b92fc97de4d1bfaf8ba1a3aa29af54cc90845",
    "t10k-images-idx3-ubyte.gz": "346e55b948d973a97e58d2351dde16a484bd415d4595297633bb08f03db6a073",
    "t10k-labels-idx1-ubyte.gz": "67da17c76eaffca5446c3361aaab5c3cd6d1c2608764d35dfb1850b086bf8dd5",
}

_DOWNLOADS = {
    "mnist": ("https://storage.googleapis.com/cvdf-datasets/mnist/", MNIST_SHA256),
    "fashion-mnist": (
        "https://raw.githubusercontent.com/zalandoresearch/fashion-mnist/master/data/fashion/",
        FASHION_MNIST_SHA256,
    ),
}

_CHUNK = 1 << 20


def _sha256_file(path):
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(_CHUNK), b""):
            digest.update(block)
    return digest.hexdigest()


def download_mnist(dest, kind="mnist", base_url=None, sha256=None, timeout=60.0):
    """Download the four MNIST (or Fashion-MNIST) archives, verified, into ``dest``.

    For each of ``train-images-idx3-ubyte.gz``, ``train-labels-idx1-ubyte.gz``,
    ``t10k-images-idx3-ubyte.gz`` and ``t10k-labels-idx1-ubyte.gz``: a file
    already in ``dest`` with the expected SHA-256 is kept; otherwise the file
    is fetched from ``base_url + name`` into a temporary file in ``dest``
    (:func:`fastcnn._util.atomic_write`), its SHA-256 is checked, and only
    then is it moved into place with :func:`os.replace`.  So ``dest`` never
    holds half a file or a file with the wrong checksum, even if the
    download is interrupted.  Files get the mode ``0o666 & ~umask``.

    Parameters
    ----------
    dest : str or os.PathLike
        Directory to fill (created if needed).  Load it afterwards with
        :func:`load_mnist` or :func:`load_fashion_mnist`.
    kind : {"mnist", "fashion-mnist"}
        Which data set: chooses the default URL and checksums.
    base_url : str, optional
        Where the files are, ending in ``/`` or not (``file://`` URLs work,
        for a local mirror).  Default: the TensorFlow MNIST mirror
        ``https://storage.googleapis.com/cvdf-datasets/mnist/`` or
        Fashion-MNIST's GitHub repository.
    sha256 : dict of str to str, optional
        Expected SHA-256 (hex) by file name, overriding the published ones in
        :data:`MNIST_SHA256` / :data:`FASHION_MNIST_SHA256` for the files it
        names: use it for a mirror that recompressed the archives.
    timeout : float
        Seconds before a stalled connection fails.

    Returns
    -------
    pathlib.Path
        ``dest``.

    Raises
    ------
    ValueError
        If ``kind`` is unknown or a downloaded file's SHA-256 differs from the
        expected one (the file is discarded; the message names it).
    OSError
        If a file cannot be fetched (no network, missing on the server) or
        written.

    Examples
    --------
    On a machine with internet access::

        from fastcnn.data import download_mnist, load_mnist
        load_mnist(download_mnist("~/data/mnist"))
    """
    if kind not in _DOWNLOADS:
        raise ValueError(f"download_mnist: kind must be one of {sorted(_DOWNLOADS)}, got {kind!r}")
    default_url, published = _DOWNLOADS[kind]
    expected = dict(published)
    if sha256 is not None:
        unknown = sorted(set(sha256) - set(expected))
        if unknown:
            raise ValueError(
                f"download_mnist: sha256 names unknown files {unknown}; expected names among {sorted(expected)}"
            )
        expected.update({name: str(h).lower() for name, h in sha256.items()})
    url = default_url if base_url is None else str(base_url)
    if not url.endswith("/"):
        url += "/"
    directory = Path(os.fspath(dest)).expanduser()
    directory.mkdir(parents=True, exist_ok=True)
    for name, digest in expected.items():
        target = directory / name
        if target.is_file() and _sha256_file(target) == digest:
            continue
        _fetch_verified(url + name, target, digest, timeout)
    return directory


def _fetch_verified(url, target, digest, timeout):
    """Stream ``url`` into ``target`` through :func:`atomic_write`, which keeps it only if its SHA-256 is ``digest``."""

    def write(out):
        hasher = hashlib.sha256()
        try:
            with urllib.request.urlopen(url, timeout=timeout) as response:
                for block in iter(lambda: response.read(_CHUNK), b""):
                    hasher.update(block)
                    out.write(block)
        except (urllib.error.URLError, OSError) as exc:
            raise OSError(f"download_mnist: could not fetch {url}: {exc}") from None
        got = hasher.hexdigest()
        if got != digest:  # raising here makes atomic_write discard the temporary file
            raise ValueError(
                f"download_mnist: {url} has SHA-256 {got}, expected {digest}; "
                "the file was discarded (corrupt download or a different file: pass sha256= for a mirror)"
            )

    atomic_write(target, write)
