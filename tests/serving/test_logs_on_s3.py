"""``[logs] type = "s3"``: a server answering predictions and feedback writes both logs
into the bucket (moto's S3 server), and the project reads them back through the same
interface as local logs; a backup holds the log objects and a restore puts them back."""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from prodml import Project
from prodml.ops import backup_project, read_snapshot, restore_snapshot
from prodml.project import serving_app
from prodml.storage import S3LogStore
from servicekit import s3_store
from servingkit import FEATURES, row, serving_project

pytestmark = pytest.mark.integration


def test_a_server_writes_both_logs_to_the_bucket_and_they_restore(
    s3_endpoint: str, tmp_path: Path
) -> None:
    bucket = s3_store(s3_endpoint).bucket
    prefix = f"p-{uuid.uuid4().hex[:8]}"
    section = (f'[logs]\ntype = "s3"\nbucket = "{bucket}"\nprefix = "{prefix}"\n'
               f'endpoint_url = "{s3_endpoint}"\nregion = "us-east-1"\n')  # fmt: skip
    project, _ = serving_project(tmp_path / "p", config=section)
    assert isinstance(project.logs.predictions, S3LogStore)
    ids = []
    with TestClient(serving_app(project)) as client:
        for seed in range(3):
            data = [row(seed)[name] for name in FEATURES]
            body = {"id": f"req-{seed}",
                    "inputs": [{"name": "x", "shape": [1, 20], "datatype": "FP64", "data": data}]}  # fmt: skip
            response = client.post("/v2/models/lr/infer", json=body)
            assert response.status_code == 200, response.text
            ids.append(response.json()["id"])
        feedback = {"endpoint": "lr", "request_id": ids[0], "label": 1}
        assert client.post("/v1/feedback", json=feedback).status_code == 200
    predictions = project.logs.predictions.read(endpoint="lr")
    assert sorted(predictions["request_id"].to_pylist()) == sorted(ids)
    labels = project.logs.labels.read(endpoint="lr")
    assert labels["request_id"].to_pylist() == [ids[0]]
    assert project.logs.predictions.endpoints() == ["lr"]
    store = project.logs.predictions
    keys = store._list(f"{store.root}/")
    assert keys
    assert all(k.startswith("logs/predictions/endpoint=lr/date=") for k in keys)
    project.close()

    # The logs are state outside the directory: the snapshot holds them.
    snapshot = backup_project(tmp_path / "p", tmp_path / "backups", record=False).path
    logged = [e for e in read_snapshot(snapshot).external if e.store == "logs"]
    assert {e.key for e in logged} >= set(keys)
    reads: list[str] = []
    load = S3LogStore._load

    def counted(self: S3LogStore, key: str) -> bytes:
        reads.append(key)
        return load(self, key)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(S3LogStore, "_load", counted)
        again = backup_project(tmp_path / "p", tmp_path / "backups", record=False)
    assert reads == []  # log objects are written once: the last snapshot's are not read again
    assert again.new_blobs == 0
    for key in store._list("logs/"):
        store._delete(key)
    assert store.read(endpoint="lr").num_rows == 0
    restore_snapshot(snapshot, tmp_path / "restored")
    with Project.open(tmp_path / "restored") as restored:
        again = restored.logs.predictions.read(endpoint="lr")
        assert sorted(again["request_id"].to_pylist()) == sorted(ids)
        assert restored.logs.labels.read(endpoint="lr").num_rows == 1
