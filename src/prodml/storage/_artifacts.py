"""Content-addressed artifacts: bytes stored under their SHA-256, verified on every read.

Keys are ``sha256/ab/cdef…`` (the first two hex digits name a folder) on any
:class:`~prodml.storage.BlobStore`.

>>> from prodml.storage._blob_memory import MemoryBlobStore
>>> store = ArtifactStore(MemoryBlobStore())
>>> digest = store.put_bytes(b"model")
>>> digest[:12], store.get_bytes(digest), store.list() == [digest]
('9372c470eead', b'model', True)
>>> digest_key(digest)[:13]
'sha256/93/72c'
"""

from __future__ import annotations

import builtins
import hashlib
import logging
import re
import tempfile
from pathlib import Path

from prodml.core import IntegrityError, fingerprint_file
from prodml.core.errors import ArtifactNotFoundError
from prodml.storage._atomic import TEMP_PREFIX, TEMP_SUFFIX
from prodml.storage._blobs import BlobStore

__all__ = ["ArtifactStore", "check_digest", "digest_key"]

_DIGEST = re.compile(r"^[0-9a-f]{64}$")
_ROOT = "sha256/"
_log = logging.getLogger("prodml.storage")


def check_digest(digest: str) -> str:
    """Return ``digest`` if it is 64 lowercase hex characters, else raise ValueError."""
    if not isinstance(digest, str) or not _DIGEST.fullmatch(digest):
        raise ValueError(
            f"artifact digest {digest!r} is invalid: expected 64 lowercase hex characters (SHA-256)"
        )
    return digest


def digest_key(digest: str) -> str:
    """The blob key of a digest: ``sha256/<2 hex>/<62 hex>``."""
    check_digest(digest)
    return f"{_ROOT}{digest[:2]}/{digest[2:]}"


class ArtifactStore:
    """Immutable blobs addressed by the SHA-256 of their content.

    Writing the same content twice stores it once. Reads recompute the hash and raise
    :class:`IntegrityError` when the stored bytes no longer match their address.
    """

    def __init__(self, blobs: BlobStore) -> None:
        self.blobs = blobs

    def __repr__(self) -> str:
        return f"ArtifactStore({self.blobs!r})"

    def put_bytes(self, data: bytes) -> str:
        """Store ``data`` and return its hex SHA-256."""
        digest = hashlib.sha256(data).hexdigest()
        key = digest_key(digest)
        if not self._intact(key, digest):
            self.blobs.save_bytes(key, data)
        return digest

    def put_file(self, path: str | Path) -> str:
        """Store a file's content, streamed (never read whole into memory); return its digest.

        The file is hashed, then copied: if it changes in between, the stored blob no
        longer matches its digest and every read of it raises :class:`IntegrityError`.
        """
        source = Path(path)
        digest = fingerprint_file(source)
        key = digest_key(digest)
        if not self._intact(key, digest):
            self.blobs.save_file(key, source)
        return digest

    def _intact(self, key: str, digest: str) -> bool:
        """Whether the blob ``key`` is stored with the content of ``digest``. A stored
        blob is hashed again before a put skips it: a corrupt one (damaged on disk,
        edited) is rewritten from the good content, never handed to a new record."""
        if not self.blobs.exists(key):
            return False
        try:
            actual = self.blobs.sha256(key)
        except ArtifactNotFoundError:  # deleted meanwhile
            return False
        if actual != digest:
            _log.warning("artifact %s: stored bytes hash to %s; rewriting it", digest, actual)
            return False
        return True

    def get_bytes(self, digest: str) -> bytes:
        """The verified content of ``digest``; :class:`ArtifactNotFoundError` if absent."""
        data = self.blobs.load_bytes(digest_key(digest))
        _verify(digest, hashlib.sha256(data).hexdigest())
        return data

    def get_file(self, digest: str, dest: str | Path) -> Path:
        """Write the verified content of ``digest`` to ``dest`` and return ``dest``.

        The blob is copied to a temp file beside ``dest`` and hashed there; only a
        matching copy is renamed to ``dest``, so a corrupt blob never replaces it.
        """
        key = digest_key(digest)
        target = Path(dest)
        target.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(
            dir=target.parent, prefix=f"{TEMP_PREFIX}{target.name}.", suffix=TEMP_SUFFIX
        ) as staging:
            copy = Path(staging) / target.name
            self.blobs.load_file(key, copy)
            _verify(digest, fingerprint_file(copy))
            copy.replace(target)
        return target

    def check(self, digest: str) -> None:
        """Verify the stored content of ``digest`` without copying it anywhere:
        :class:`ArtifactNotFoundError` if absent, :class:`IntegrityError` if its bytes
        hash to anything else."""
        _verify(digest, self.blobs.sha256(digest_key(digest)))

    def exists(self, digest: str) -> bool:
        """Whether ``digest`` is stored (its content is not verified)."""
        return self.blobs.exists(digest_key(digest))

    def list(self) -> builtins.list[str]:
        """Every stored digest, sorted."""
        digests = (key[len(_ROOT) :].replace("/", "", 1) for key in self.blobs.list(_ROOT))
        return sorted(d for d in digests if _DIGEST.fullmatch(d))


def _verify(digest: str, actual: str) -> None:
    if actual != digest:
        raise IntegrityError(
            f"artifact {digest}: stored bytes hash to sha256 {actual}; "
            f"expected {digest} (the blob is corrupt or was tampered with)"
        )
