"""The BlobStore contract, run against every registered backend."""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable
from pathlib import Path

import pytest

from contractkit import Contract
from prodml.core import ArtifactNotFoundError
from prodml.storage import ARTIFACT_BACKENDS, BlobStore, LocalBlobStore, MemoryBlobStore
from prodml.storage._artifacts import digest_key
from prodml.storage._blob_s3 import S3BlobStore
from servicekit import s3_store

MAKERS: dict[str, Callable[[Path], BlobStore]] = {
    "local": lambda tmp: LocalBlobStore(tmp / "blobs"),
    "memory": lambda tmp: MemoryBlobStore(),
    "s3": lambda tmp: s3_store(os.environ["PRODML_TEST_S3"]),
}
CONTRACT = Contract(ARTIFACT_BACKENDS, MAKERS, integration=("s3",))


def test_every_registered_backend_runs_the_contract() -> None:
    assert set(MAKERS) == set(ARTIFACT_BACKENDS)
    CONTRACT.check()


@pytest.fixture(params=CONTRACT.cases())
def store(
    request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> BlobStore:
    if request.param == "s3":
        monkeypatch.setenv("PRODML_TEST_S3", request.getfixturevalue("s3_endpoint"))
    store = CONTRACT.factory(request.param)(tmp_path)
    assert isinstance(store, ARTIFACT_BACKENDS.load(request.param))
    return store


def test_save_then_load_round_trips(store: BlobStore) -> None:
    store.save_bytes("models/m1.bin", b"\x00\x01weights")
    store.save_bytes("empty", b"")
    assert store.load_bytes("models/m1.bin") == b"\x00\x01weights"
    assert store.load_bytes("empty") == b""


def test_save_accepts_bytes_like_values(store: BlobStore) -> None:
    store.save_bytes("a", bytearray(b"xy"))
    store.save_bytes("b", memoryview(b"zz"))
    assert (store.load_bytes("a"), store.load_bytes("b")) == (b"xy", b"zz")


def test_save_overwrites(store: BlobStore) -> None:
    store.save_bytes("k", b"old")
    store.save_bytes("k", b"new")
    assert store.load_bytes("k") == b"new"


def test_missing_key_raises_not_found_naming_the_key(store: BlobStore) -> None:
    with pytest.raises(ArtifactNotFoundError, match="blob 'nope/x' not found"):
        store.load_bytes("nope/x")
    assert not store.exists("nope/x")


def test_sha256_of_a_stored_value_and_of_a_missing_key(store: BlobStore) -> None:
    data = os.urandom((1 << 20) + 17)  # more than one read block
    store.save_bytes("models/big.bin", data)
    store.save_bytes("empty", b"")
    assert store.sha256("models/big.bin") == hashlib.sha256(data).hexdigest()
    assert store.sha256("empty") == hashlib.sha256(b"").hexdigest()
    with pytest.raises(ArtifactNotFoundError, match="blob 'nope/x' not found"):
        store.sha256("nope/x")


def test_exists_and_delete(store: BlobStore) -> None:
    store.save_bytes("a/b", b"1")
    assert store.exists("a/b")
    assert not store.exists("a")  # a "directory" is not a key
    store.delete("a/b")
    assert not store.exists("a/b")
    store.delete("a/b")  # deleting a missing key is a no-op
    assert store.list() == []


def test_list_filters_by_plain_string_prefix_and_sorts(store: BlobStore) -> None:
    for key in ["b/2", "a/bc/x", "a/b/y", "a/bz", "b/1", "c"]:
        store.save_bytes(key, key.encode())
    assert store.list() == ["a/b/y", "a/bc/x", "a/bz", "b/1", "b/2", "c"]
    assert store.list("a/b") == ["a/b/y", "a/bc/x", "a/bz"]
    assert store.list("a/b/") == ["a/b/y"]
    assert store.list("b") == ["b/1", "b/2"]
    assert store.list("zzz/") == []


@pytest.mark.parametrize(
    "key", ["", "/abs", "a//b", "../x", "a/../b", "a/./b", "a\\b", "a b", "a/", ".hidden.tmp"]
)
def test_invalid_keys_are_refused(store: BlobStore, key: str) -> None:
    with pytest.raises(ValueError, match=r"blob key .* is invalid"):
        store.save_bytes(key, b"x")
    with pytest.raises(ValueError, match=r"blob key .* is invalid"):
        store.exists(key)


def test_list_refuses_a_prefix_escaping_the_store(store: BlobStore) -> None:
    with pytest.raises(ValueError, match="is invalid"):
        store.list("../")


def test_files_round_trip(store: BlobStore, tmp_path: Path) -> None:
    source = tmp_path / "big.bin"
    data = os.urandom((2 << 20) + 7)  # spans several copy chunks
    source.write_bytes(data)
    store.save_file("files/big", source)
    dest = tmp_path / "out" / "copy.bin"
    store.load_file("files/big", dest)
    assert dest.read_bytes() == data
    assert store.load_bytes("files/big") == data


def test_load_file_of_a_missing_key_leaves_no_file(store: BlobStore, tmp_path: Path) -> None:
    dest = tmp_path / "never.bin"
    with pytest.raises(ArtifactNotFoundError):
        store.load_file("missing", dest)
    assert not dest.exists()
    assert [p.name for p in tmp_path.iterdir() if p.name.endswith(".tmp")] == []


def test_local_store_writes_plain_files_and_hides_temp_files(tmp_path: Path) -> None:
    store = LocalBlobStore(tmp_path)
    store.save_bytes("x/y", b"1")
    assert (tmp_path / "x" / "y").read_bytes() == b"1"
    (tmp_path / "x" / ".y.abc.tmp").write_bytes(b"in flight")
    assert store.list() == ["x/y"]
    assert sorted(p.name for p in (tmp_path / "x").iterdir()) == [".y.abc.tmp", "y"]


def test_local_save_file_failure_keeps_the_old_blob(tmp_path: Path) -> None:
    store = LocalBlobStore(tmp_path / "blobs")
    store.save_bytes("k", b"old")
    with pytest.raises(FileNotFoundError):
        store.save_file("k", tmp_path / "does-not-exist")
    assert store.load_bytes("k") == b"old"
    assert os.listdir(tmp_path / "blobs") == ["k"]


@pytest.mark.integration
def test_an_s3_artifacts_section_opens_the_bucket(s3_endpoint: str, tmp_path: Path) -> None:
    from prodml.core import load_config_text
    from prodml.storage import open_artifact_store

    bucket = s3_store(s3_endpoint).bucket
    config = load_config_text(
        f'[artifacts]\ntype = "s3"\nbucket = "{bucket}"\nprefix = "proj"\n'
        f'endpoint_url = "{s3_endpoint}"\nregion = "us-east-1"\n',
        environ={},
    )
    store = open_artifact_store(config.artifacts, tmp_path)
    digest = store.put_bytes(b"model bytes")
    assert store.get_bytes(digest) == b"model bytes"
    assert digest in store.list()
    blobs = S3BlobStore(bucket, "proj", endpoint_url=s3_endpoint, region="us-east-1")
    assert blobs.exists(digest_key(digest))  # in the bucket, under the prefix
    assert not list((tmp_path).iterdir())  # nothing written locally
    with pytest.raises(ArtifactNotFoundError):
        store.get_bytes("0" * 64)
