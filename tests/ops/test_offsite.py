"""``prodml backup --to s3://…`` and ``prodml restore s3://…/snapshots/ID`` against a real
S3 HTTP endpoint (moto's server): the upload is incremental and never repeats a blob
the bucket holds, even from a fresh local destination; a restore from the bucket alone
gives back the project; a damaged or missing object, or a snapshot whose upload was cut
short, is refused by name; retention in the bucket keeps what the kept snapshots need."""

from __future__ import annotations

import json
import shutil
import uuid
from pathlib import Path

import pytest
from typer.testing import CliRunner

from prodml import Project
from prodml.cli._app import app
from prodml.core import IntegrityError, NotFoundError
from prodml.ops import list_snapshots, prune_offsite, pull, read_snapshot, restore_snapshot
from prodml.project._verify import verify_project
from servingkit import lr_model, register, serving_project

pytestmark = pytest.mark.integration
runner = CliRunner()


class Bucket:
    def __init__(self, endpoint: str) -> None:
        from pyarrow import fs as pafs

        self.name = f"prodml-offsite-{uuid.uuid4().hex[:10]}"
        self.fs = pafs.S3FileSystem(endpoint_override=endpoint.split("://")[1], scheme="http",
                                    region="us-east-1", allow_bucket_creation=True)  # fmt: skip
        self.fs.create_dir(self.name)
        self.url = f"s3://{self.name}/backups"

    def listing(self) -> list[str]:
        from pyarrow import fs as pafs

        infos = self.fs.get_file_info(pafs.FileSelector(f"{self.name}/backups", recursive=True))
        prefix = f"{self.name}/backups/"
        return sorted(i.path[len(prefix) :] for i in infos if i.type == pafs.FileType.File)

    def write(self, key: str, data: bytes) -> None:
        with self.fs.open_output_stream(f"{self.name}/backups/{key}") as out:
            out.write(data)

    def read(self, key: str) -> bytes:
        with self.fs.open_input_stream(f"{self.name}/backups/{key}") as handle:
            return bytes(handle.read())

    def delete(self, key: str) -> None:
        self.fs.delete_file(f"{self.name}/backups/{key}")


@pytest.fixture
def bucket(s3_endpoint: str, monkeypatch: pytest.MonkeyPatch) -> Bucket:
    monkeypatch.setenv("AWS_ENDPOINT_URL", s3_endpoint)
    monkeypatch.setenv("AWS_REGION", "us-east-1")
    return Bucket(s3_endpoint)


def backup(root: Path, url: str, local: Path, *extra: str) -> dict[str, object]:
    done = runner.invoke(app, ["backup", "-p", str(root), "--to", url, "--local", str(local),
                               "--json", *extra])  # fmt: skip
    assert done.exit_code == 0, done.output
    out: dict[str, object] = json.loads(done.output)
    return out


def blob_keys(bucket: Bucket) -> set[str]:
    return {k for k in bucket.listing() if k.startswith("blobs/")}


def test_offsite_copies_are_incremental_and_restore_alone(bucket: Bucket, tmp_path: Path) -> None:
    root = tmp_path / "project"
    serving_project(root)[0].close()
    first = backup(root, bucket.url, tmp_path / "local")
    snapshot_id = first["snapshot"]["id"]  # type: ignore[index]
    local_blobs = len(list((tmp_path / "local" / "blobs").glob("*/*")))
    assert first["offsite"]["blobs_uploaded"] == local_blobs == len(blob_keys(bucket))  # type: ignore[index]
    assert f"snapshots/{snapshot_id}/MANIFEST.sha256" in bucket.listing()

    with Project.open(root) as project:
        register(project, lr_model(C=0.25)[0], lr_model()[1])
    second = backup(root, bucket.url, tmp_path / "local")
    assert 1 <= second["offsite"]["blobs_uploaded"] <= 3  # type: ignore[index]

    # A new machine: an empty local destination uploads only what the bucket lacks.
    third = backup(root, bucket.url, tmp_path / "elsewhere")
    assert third["offsite"]["blobs_uploaded"] <= 2  # type: ignore[index]
    latest = third["snapshot"]["id"]  # type: ignore[index]

    # The local copies are lost; the bucket alone restores the project.
    shutil.rmtree(tmp_path / "local")
    shutil.rmtree(tmp_path / "elsewhere")
    out = tmp_path / "restored"
    done = runner.invoke(app, ["restore", f"{bucket.url}/snapshots/{latest}", str(out), "--json"])
    assert done.exit_code == 0, done.output
    assert verify_project(out).worst() is None
    with Project.open(out) as project:
        assert [v.version for v in project.registry.versions("lr")] == [1, 2]
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".prodml-pull-")]


def test_damaged_missing_and_unfinished_offsite_snapshots_are_refused(
    bucket: Bucket, tmp_path: Path
) -> None:
    root = tmp_path / "project"
    serving_project(root)[0].close()
    snapshot_id = backup(root, bucket.url, tmp_path / "local")["snapshot"]["id"]  # type: ignore[index]
    url = f"{bucket.url}/snapshots/{snapshot_id}"
    manifest = read_snapshot(tmp_path / "local" / "snapshots" / snapshot_id)
    entry = max(manifest.files, key=lambda e: e.size)
    key = f"blobs/{entry.sha256[:2]}/{entry.sha256}"
    good = bucket.read(key)

    bucket.write(key, good[:-1] + bytes([good[-1] ^ 1]))
    with pytest.raises(IntegrityError, match=rf"{entry.path} is damaged"):
        restore_snapshot(pull(url, tmp_path / "pulled-1"), tmp_path / "out")
    done = runner.invoke(app, ["restore", url, str(tmp_path / "out")])
    assert done.exit_code != 0
    assert entry.path in done.output
    assert not (tmp_path / "out").exists()

    bucket.delete(key)
    with pytest.raises(IntegrityError, match=rf"{entry.path} is missing"):
        restore_snapshot(pull(url, tmp_path / "pulled-2"), tmp_path / "out")
    assert not (tmp_path / "out").exists()
    bucket.write(key, good)

    # An upload cut short before its MANIFEST.sha256: not a snapshot.
    bucket.delete(f"snapshots/{snapshot_id}/MANIFEST.sha256")
    with pytest.raises(NotFoundError, match="no such complete snapshot"):
        pull(url, tmp_path / "pulled-3")
    done = runner.invoke(app, ["restore", f"{bucket.url}/nowhere", str(tmp_path / "out")])
    assert done.exit_code != 0
    assert "snapshots/ID" in done.output


def test_offsite_retention_keeps_what_kept_snapshots_need(bucket: Bucket, tmp_path: Path) -> None:
    root = tmp_path / "project"
    serving_project(root)[0].close()
    for C in (0.5, 0.25):
        backup(root, bucket.url, tmp_path / "local")
        with Project.open(root) as project:
            register(project, lr_model(C=C)[0], lr_model()[1])
    newest = backup(root, bucket.url, tmp_path / "local")["snapshot"]["id"]  # type: ignore[index]
    assert len(list_snapshots(tmp_path / "local")) == 3

    removed = prune_offsite(bucket.url, keep_last=1, keep_daily=0, keep_weekly=0)
    assert len(removed) == 2
    assert newest not in removed
    snapshots = {k.split("/")[1] for k in bucket.listing() if k.startswith("snapshots/")}
    assert snapshots == {newest}
    wanted = read_snapshot(tmp_path / "local" / "snapshots" / newest)
    assert blob_keys(bucket) == {f"blobs/{e.sha256[:2]}/{e.sha256}" for e in wanted.files}
    restore_snapshot(
        pull(f"{bucket.url}/snapshots/{newest}", tmp_path / "pulled"), tmp_path / "out"
    )
    assert verify_project(tmp_path / "out").worst() is None
