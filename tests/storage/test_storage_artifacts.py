"""The content-addressed ArtifactStore over every blob backend, and its plugin registry."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import pytest

from contractkit import Contract
from prodml.core import (
    ArtifactNotFoundError,
    ConfigError,
    IntegrityError,
    LocalArtifactsConfig,
    fingerprint_file,
)
from prodml.storage import (
    ARTIFACT_BACKENDS,
    ArtifactStore,
    LocalBlobStore,
    MemoryBlobStore,
    blob_store_class,
    digest_key,
    open_artifact_store,
)
from servicekit import s3_store

CONTRACT = Contract(
    ARTIFACT_BACKENDS,
    {
        "local": lambda tmp: ArtifactStore(LocalBlobStore(tmp / "artifacts")),
        "memory": lambda tmp: ArtifactStore(MemoryBlobStore()),
        "s3": lambda tmp: ArtifactStore(s3_store(os.environ["PRODML_TEST_S3"])),
    },
    integration=("s3",),
)


def test_every_registered_backend_runs_the_contract() -> None:
    CONTRACT.check()


@pytest.fixture(params=CONTRACT.cases())
def artifacts(
    request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> ArtifactStore:
    if request.param == "s3":
        monkeypatch.setenv("PRODML_TEST_S3", request.getfixturevalue("s3_endpoint"))
    store: ArtifactStore = CONTRACT.factory(request.param)(tmp_path)
    assert isinstance(store.blobs, ARTIFACT_BACKENDS.load(request.param))
    return store


def test_put_bytes_returns_the_sha256_and_stores_once(artifacts: ArtifactStore) -> None:
    digest = artifacts.put_bytes(b"model-v1")
    assert digest == hashlib.sha256(b"model-v1").hexdigest()
    assert artifacts.put_bytes(b"model-v1") == digest
    assert artifacts.blobs.list() == [f"sha256/{digest[:2]}/{digest[2:]}"]
    assert artifacts.exists(digest)
    assert artifacts.get_bytes(digest) == b"model-v1"


def test_list_returns_every_digest_sorted(artifacts: ArtifactStore) -> None:
    digests = [artifacts.put_bytes(bytes([i])) for i in range(5)]
    artifacts.blobs.save_bytes("other/thing", b"not an artifact")
    assert artifacts.list() == sorted(digests)


def test_put_file_and_get_file_round_trip(artifacts: ArtifactStore, tmp_path: Path) -> None:
    source = tmp_path / "model.bin"
    source.write_bytes(os.urandom(3 << 20))
    digest = artifacts.put_file(source)
    assert digest == fingerprint_file(source)
    dest = artifacts.get_file(digest, tmp_path / "restored" / "model.bin")
    assert dest.read_bytes() == source.read_bytes()


def test_put_file_streams_instead_of_reading_the_whole_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = ArtifactStore(LocalBlobStore(tmp_path / "artifacts"))
    source = tmp_path / "big.bin"
    source.write_bytes(b"x" * (3 << 20))

    def refuse(self: Path) -> bytes:
        raise AssertionError(f"{self} was read whole")

    monkeypatch.setattr(Path, "read_bytes", refuse)
    digest = store.put_file(source)
    dest = store.get_file(digest, tmp_path / "out.bin")
    monkeypatch.undo()
    assert dest.read_bytes() == source.read_bytes()


def test_corrupt_blob_raises_integrity_error(artifacts: ArtifactStore, tmp_path: Path) -> None:
    digest = artifacts.put_bytes(b"good weights")
    artifacts.blobs.save_bytes(digest_key(digest), b"evil weights")
    actual = hashlib.sha256(b"evil weights").hexdigest()
    with pytest.raises(
        IntegrityError, match=rf"artifact {digest}: stored bytes hash to sha256 {actual}"
    ):
        artifacts.get_bytes(digest)
    with pytest.raises(IntegrityError, match=actual):
        artifacts.check(digest)
    dest = tmp_path / "model.bin"
    dest.write_bytes(b"previous")
    with pytest.raises(IntegrityError, match=actual):
        artifacts.get_file(digest, dest)
    assert dest.read_bytes() == b"previous"
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []


def test_a_put_of_corrupt_content_rewrites_it_rather_than_skip_it(
    artifacts: ArtifactStore, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A blob damaged in place is not reused by the next put of the same content (a
    retrain with the same seed would register a version whose artifact cannot load)."""
    digest = artifacts.put_bytes(b"good weights")
    artifacts.blobs.save_bytes(digest_key(digest), b"evil weights")
    assert artifacts.put_bytes(b"good weights") == digest
    assert artifacts.get_bytes(digest) == b"good weights"
    assert f"artifact {digest}: stored bytes hash to" in caplog.text
    source = tmp_path / "model.bin"
    source.write_bytes(os.urandom(3 << 20))
    digest = artifacts.put_file(source)
    artifacts.blobs.save_bytes(digest_key(digest), b"truncated")
    assert artifacts.put_file(source) == digest
    artifacts.check(digest)
    assert artifacts.get_file(digest, tmp_path / "out.bin").read_bytes() == source.read_bytes()


def test_check_hashes_in_place(artifacts: ArtifactStore) -> None:
    data = os.urandom(3 << 20)  # more than one read block
    digest = artifacts.put_bytes(data)
    artifacts.check(digest)  # no error: the bytes hash to their name


def test_missing_and_malformed_digests(artifacts: ArtifactStore, tmp_path: Path) -> None:
    missing = "0" * 64
    assert not artifacts.exists(missing)
    with pytest.raises(ArtifactNotFoundError, match="sha256/00/0000"):
        artifacts.get_bytes(missing)
    with pytest.raises(ArtifactNotFoundError):
        artifacts.get_file(missing, tmp_path / "x.bin")
    with pytest.raises(ArtifactNotFoundError, match="sha256/00/0000"):
        artifacts.check(missing)
    assert not (tmp_path / "x.bin").exists()
    for bad in ["abc", "G" * 64, "A" * 64, "../" + "0" * 61]:
        with pytest.raises(ValueError, match="expected 64 lowercase hex characters"):
            artifacts.get_bytes(bad)
        with pytest.raises(ValueError, match="expected 64 lowercase hex characters"):
            artifacts.check(bad)


def test_open_artifact_store_from_the_default_config(tmp_path: Path) -> None:
    store = open_artifact_store(LocalArtifactsConfig(), tmp_path)
    digest = store.put_bytes(b"abc")
    blob = tmp_path / ".prodml" / "artifacts" / "sha256" / digest[:2] / digest[2:]
    assert blob.read_bytes() == b"abc"


def test_open_artifact_store_with_an_absolute_path(tmp_path: Path) -> None:
    store = open_artifact_store(LocalArtifactsConfig(path=str(tmp_path / "elsewhere")), "/ignored")
    assert isinstance(store.blobs, LocalBlobStore)
    assert store.blobs.root == tmp_path / "elsewhere"


def test_registry_maps_names_to_lazy_import_paths() -> None:
    assert all(":" in target for target in ARTIFACT_BACKENDS.values())
    assert blob_store_class("local") is LocalBlobStore
    assert blob_store_class("memory") is MemoryBlobStore
    assert blob_store_class("s3").__name__ == "S3BlobStore"
    with pytest.raises(
        ConfigError,
        match="artifacts backend 'gcs' is unknown: expected one of 'local', 'memory', 's3'",
    ):
        blob_store_class("gcs")


def test_registry_reports_a_backend_that_cannot_be_imported(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setitem(ARTIFACT_BACKENDS, "broken", "prodml.storage._no_such_module:Store")
    with pytest.raises(ConfigError, match="artifacts backend 'broken': cannot import"):
        blob_store_class("broken")
