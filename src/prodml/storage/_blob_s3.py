"""Blobs as objects in an S3-compatible bucket (AWS S3, MinIO, Ceph, moto), through
pyarrow's S3 filesystem: already a dependency (Arrow's C++ client, no boto3), and the
same client the table and log readers can use. Credentials come from the environment
the AWS way (``AWS_ACCESS_KEY_ID`` / ``AWS_SECRET_ACCESS_KEY``, a profile, an instance
role). Key ``a/b`` is object ``<prefix>a/b``; an S3 PUT replaces an object whole, so a
reader sees the old or the new bytes, never a mix.
"""

from __future__ import annotations

import builtins
import contextlib
import hashlib
import os
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from pyarrow import fs as pafs

from prodml.core import S3ArtifactsConfig
from prodml.core.errors import ConfigError, StorageError
from prodml.storage._blobs import BlobStore

__all__ = ["S3BlobStore"]

_CHUNK = 1 << 20
_URL = re.compile(r"^s3://([a-z0-9][a-z0-9.\-]{1,61}[a-z0-9])(/.*)?$")


class S3BlobStore(BlobStore):
    """A :class:`BlobStore` in ``bucket`` under ``prefix`` (``""``: the bucket's root)."""

    def __init__(
        self,
        bucket: str,
        prefix: str = "",
        *,
        endpoint_url: str | None = None,
        region: str | None = None,
    ) -> None:
        self.bucket = bucket
        self.prefix = prefix.strip("/") + "/" if prefix.strip("/") else ""
        options: dict[str, Any] = {}
        if endpoint_url:
            parts = urlsplit(endpoint_url)
            options["endpoint_override"] = parts.netloc or parts.path
            options["scheme"] = parts.scheme or "https"
        if region:
            options["region"] = region
        self.fs = pafs.S3FileSystem(**options)
        self.endpoint_url = endpoint_url

    @classmethod
    def from_url(cls, url: str, *, what: str = "location") -> S3BlobStore:
        """The bucket and prefix of ``s3://BUCKET[/PREFIX]``, with the endpoint and region
        of the environment, as any S3 client takes them (``AWS_ENDPOINT_URL_S3`` or
        ``AWS_ENDPOINT_URL``, ``AWS_REGION`` or ``AWS_DEFAULT_REGION``)."""
        found = _URL.match(url)
        if found is None:
            raise ConfigError(
                f"{what} {url!r}: expected s3://BUCKET[/PREFIX] with a valid bucket name "
                "(3-63 lowercase letters, digits, dots and hyphens)"
            )
        region = os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION")
        endpoint = os.environ.get("AWS_ENDPOINT_URL_S3") or os.environ.get("AWS_ENDPOINT_URL")
        return cls(found.group(1), (found.group(2) or "").strip("/"), endpoint_url=endpoint,
                   region=region)  # fmt: skip

    def url(self, key: str = "") -> str:
        """The ``s3://`` URL of ``key``."""
        return f"s3://{self._path(key)}"

    @classmethod
    def from_config(cls, config: Any, root: Path) -> S3BlobStore:
        if not isinstance(config, S3ArtifactsConfig):
            raise TypeError(
                f"S3BlobStore.from_config: expected S3ArtifactsConfig, got {type(config).__name__}"
            )
        return cls(config.bucket, config.prefix, endpoint_url=config.endpoint_url,
                   region=config.region)  # fmt: skip

    def __repr__(self) -> str:
        return f"S3BlobStore(bucket={self.bucket!r}, prefix={self.prefix!r})"

    def _path(self, key: str) -> str:
        return f"{self.bucket}/{self.prefix}{key}"

    def _failed(self, what: str, key: str, exc: Exception) -> StorageError:
        return StorageError(f"s3://{self._path(key)}: {what} failed: {exc}")

    def _save_bytes(self, key: str, data: bytes) -> None:
        try:
            with self.fs.open_output_stream(self._path(key)) as out:
                out.write(data)
        except OSError as exc:
            raise self._failed("write", key, exc) from exc

    def _save_file(self, key: str, source: Path) -> None:
        try:
            with source.open("rb") as reader, self.fs.open_output_stream(self._path(key)) as out:
                while chunk := reader.read(_CHUNK):
                    out.write(chunk)
        except FileNotFoundError:
            raise
        except OSError as exc:
            raise self._failed("write", key, exc) from exc

    @contextlib.contextmanager
    def _reader(self, key: str) -> Iterator[Any]:
        """The object's input stream; a missing object is :meth:`_missing`, any other
        failure a :class:`StorageError` naming it."""
        try:
            with self.fs.open_input_stream(self._path(key)) as reader:
                yield reader
        except FileNotFoundError:
            raise self._missing(key) from None
        except OSError as exc:
            if not self._exists(key):
                raise self._missing(key) from None
            raise self._failed("read", key, exc) from exc

    def _sha256(self, key: str) -> str:
        digest = hashlib.sha256()
        with self._reader(key) as reader:
            while block := reader.read(_CHUNK):
                digest.update(block)
        return digest.hexdigest()

    def _load_bytes(self, key: str) -> bytes:
        with self._reader(key) as reader:
            data: bytes = reader.read()
        return data

    def _exists(self, key: str) -> bool:
        try:
            return bool(self.fs.get_file_info(self._path(key)).type == pafs.FileType.File)
        except OSError as exc:
            raise self._failed("stat", key, exc) from exc

    def _list(self, prefix: str) -> builtins.list[str]:
        base = prefix.rsplit("/", 1)[0] if "/" in prefix else ""
        start = f"{self.bucket}/{self.prefix}{base}".rstrip("/")
        selector = pafs.FileSelector(start, recursive=True, allow_not_found=True)
        try:
            infos = self.fs.get_file_info(selector)
        except OSError as exc:
            raise self._failed("list", prefix, exc) from exc
        head = f"{self.bucket}/{self.prefix}"
        return [i.path[len(head):] for i in infos
                if i.type == pafs.FileType.File and i.path.startswith(head)]  # fmt: skip

    def _delete(self, key: str) -> None:
        try:
            self.fs.delete_file(self._path(key))
        except FileNotFoundError:
            pass
        except OSError as exc:
            raise self._failed("delete", key, exc) from exc
