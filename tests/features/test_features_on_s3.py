"""Feature sources and training-set snapshots in an S3-compatible bucket (moto's
server): Parquet sources at ``s3://`` URLs (one object, a prefix of objects, a glob)
build the same point-in-time training set as the same files on disk, the snapshot is
stored in the bucket (``[features] datasets_path = "s3://…"``) and read back, and a
backup holds it as external state and restores it."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from featurekit import FEATURES_PY, T0, entity_rows, make_project, planes_table, weather_table
from prodml import Project
from prodml.core import SourceError
from prodml.ops import backup_project, read_snapshot, restore_snapshot
from prodml.storage._blob_s3 import S3BlobStore
from servicekit import s3_store

pytestmark = pytest.mark.integration


def _put(store: S3BlobStore, key: str, table: object) -> None:
    import pyarrow as pa

    out = pa.BufferOutputStream()
    pq.write_table(table, out)
    store.save_bytes(key, out.getvalue().to_pybytes())


@pytest.fixture
def bucket(s3_endpoint: str, monkeypatch: pytest.MonkeyPatch) -> S3BlobStore:
    monkeypatch.setenv("AWS_ENDPOINT_URL", s3_endpoint)
    monkeypatch.setenv("AWS_REGION", "us-east-1")
    store = s3_store(s3_endpoint)
    root = S3BlobStore(store.bucket, "", endpoint_url=s3_endpoint, region="us-east-1")
    weather = weather_table()
    half = weather.num_rows // 2
    _put(root, "data/weather/part-0.parquet", weather.slice(0, half))  # a prefix of objects
    _put(root, "data/weather/part-1.parquet", weather.slice(half))
    _put(root, "data/planes-2013.parquet", planes_table())  # matched by a glob
    return root


def test_s3_sources_and_snapshots_build_the_same_training_set(
    bucket: S3BlobStore, tmp_path: Path
) -> None:
    local = make_project(tmp_path / "local")
    remote_root = tmp_path / "remote"
    make_project(remote_root).close()
    url = f"s3://{bucket.bucket}"
    (remote_root / "features.py").write_text(
        FEATURES_PY.replace('"data/weather.parquet"', f'"{url}/data/weather/"').replace(
            '"data/planes.parquet"', f'"{url}/data/planes-*.parquet"'
        )
    )
    toml = remote_root / "prodml.toml"
    toml.write_text(toml.read_text().replace(
        '[features]\n', f'[features]\ndatasets_path = "{url}/datasets"\n', 1))  # fmt: skip
    remote = Project.open(remote_root)
    try:
        results = {}
        for name, project in (("local", local), ("remote", remote)):
            project.features.apply()
            built = project.features.build_training_set(
                entity_rows(40), "flight_delay", timestamp="sched_dep"
            )
            results[name] = built
        assert results["remote"].fingerprint == results["local"].fingerprint
        assert results["remote"].to_arrow().equals(results["local"].to_arrow())
        fingerprint = results["remote"].fingerprint
        assert str(results["remote"].path) == f"{url}/datasets/{fingerprint}.parquet"
        assert bucket.exists(f"datasets/{fingerprint}.parquet")
        assert remote.features.get_training_set(fingerprint).table.equals(
            results["remote"].to_arrow()
        )
        remote.features.materialize(end=T0 + timedelta(days=4, hours=6))
    finally:
        remote.close()
        local.close()

    # The snapshot in the bucket is external state: backed up, and restored.
    snapshot = backup_project(remote_root, tmp_path / "backups", record=False).path
    entries = [e for e in read_snapshot(snapshot).external if e.store == "datasets"]
    assert [e.key for e in entries] == [f"{fingerprint}.parquet"]
    bucket.delete(f"datasets/{fingerprint}.parquet")
    restore_snapshot(snapshot, tmp_path / "restored")
    assert bucket.exists(f"datasets/{fingerprint}.parquet")
    with Project.open(tmp_path / "restored") as restored:
        assert restored.features.get_training_set(fingerprint).num_rows == 40


def test_a_missing_s3_source_is_refused_by_name(bucket: S3BlobStore, tmp_path: Path) -> None:
    root = tmp_path / "p"
    make_project(root).close()
    missing = f"s3://{bucket.bucket}/data/nowhere/"
    (root / "features.py").write_text(FEATURES_PY.replace('"data/weather.parquet"', f'"{missing}"'))
    with Project.open(root) as project:
        project.features.apply()
        with pytest.raises(SourceError, match="nowhere"):
            project.features.build_training_set(
                entity_rows(5), "flight_delay", timestamp="sched_dep"
            )
