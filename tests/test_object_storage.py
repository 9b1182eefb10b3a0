"""The catalog on object storage: a real S3-compatible server (moto's server mode, an HTTP endpoint
on 127.0.0.1 started here) reached through s3fs, as a bucket would be — no mock of the client."""

from __future__ import annotations

import io
import os

import keras
import numpy as np
import pytest
from kedro.io import DatasetError, Version

from cifar_kedro.datasets import ImageFolderDataset, KerasModelDataset, NpzDataset
from tests.conftest import make_project, run_session

s3fs = pytest.importorskip("s3fs")
moto_server = pytest.importorskip("moto.server")
boto3 = pytest.importorskip("boto3")

BUCKET = "cifar-kedro-test"


@pytest.fixture(scope="module")
def s3():
    """``(credentials, filesystem)`` for a fresh bucket on a local S3 server."""
    os.environ.setdefault("AWS_EC2_METADATA_DISABLED", "true")  # never look for a cloud's credentials
    server = moto_server.ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    credentials = {"key": "testing", "secret": "testing",
                   "client_kwargs": {"endpoint_url": f"http://{host}:{port}", "region_name": "us-east-1"}}
    boto3.client("s3", endpoint_url=credentials["client_kwargs"]["endpoint_url"], aws_access_key_id="testing",
                 aws_secret_access_key="testing", region_name="us-east-1").create_bucket(Bucket=BUCKET)
    yield credentials, s3fs.S3FileSystem(**credentials)
    server.stop()


def tiny_model() -> keras.Model:
    keras.utils.set_random_seed(0)
    return keras.Sequential([keras.Input((4,)), keras.layers.Dense(3, activation="softmax")])


def test_versions_round_trip_and_a_failed_save_leaves_nothing(s3):
    credentials, fs = s3
    arrays = NpzDataset(filepath=f"s3://{BUCKET}/unit/split.npz", credentials=credentials, version=Version(None, None))
    first = {"images": np.arange(24, dtype=np.uint8).reshape(2, 2, 2, 3), "labels": np.array([0, 1])}
    NpzDataset(filepath=f"s3://{BUCKET}/unit/split.npz", credentials=credentials,
               version=Version(None, "2026-01-01T00.00.00.000Z")).save(first)
    second = {"images": first["images"] + 1, "labels": np.array([1, 0])}
    NpzDataset(filepath=f"s3://{BUCKET}/unit/split.npz", credentials=credentials,
               version=Version(None, "2026-01-02T00.00.00.000Z")).save(second)
    assert fs.ls(f"{BUCKET}/unit/split.npz") == [f"{BUCKET}/unit/split.npz/2026-01-01T00.00.00.000Z",
                                                  f"{BUCKET}/unit/split.npz/2026-01-02T00.00.00.000Z"]
    np.testing.assert_array_equal(arrays.load()["images"], second["images"])  # the newest
    older = NpzDataset(filepath=f"s3://{BUCKET}/unit/split.npz", credentials=credentials,
                       version=Version("2026-01-01T00.00.00.000Z", None))
    np.testing.assert_array_equal(older.load()["labels"], first["labels"])

    path = f"s3://{BUCKET}/unit/model.keras"
    model = tiny_model()
    KerasModelDataset(filepath=path, credentials=credentials, version=Version(None, "2026-01-01T00.00.00.000Z")).save(model)
    x = np.random.default_rng(0).normal(size=(5, 4)).astype("float32")

    class FailsHalfway:
        def save(self, local_path):
            with open(local_path, "wb") as file:
                file.write(b"PK\x03\x04 half a zip")
            raise RuntimeError("killed while writing")

    with pytest.raises(DatasetError, match="killed while writing"):
        KerasModelDataset(filepath=path, credentials=credentials,
                          version=Version(None, "2026-01-02T00.00.00.000Z")).save(FailsHalfway())
    assert fs.ls(f"{BUCKET}/unit/model.keras") == [f"{BUCKET}/unit/model.keras/2026-01-01T00.00.00.000Z"]
    loaded = KerasModelDataset(filepath=path, credentials=credentials, version=Version(None, None)).load()
    np.testing.assert_allclose(loaded.predict(x, verbose=0), model.predict(x, verbose=0), rtol=1e-6)


def png(colour, mode="RGB") -> bytes:
    from PIL import Image

    buffer = io.BytesIO()
    Image.new(mode, (12, 9), colour).save(buffer, format="PNG")
    return buffer.getvalue()


def test_an_image_folder_in_a_bucket_reads_as_on_disk_and_names_bad_files_by_their_url(s3, tmp_path):
    credentials, fs = s3
    files = {"cat/a.png": png((250, 10, 10)), "cat/b.png": png(90, mode="L"),
             "dog/c.png": png((10, 10, 250, 128), mode="RGBA"), "dog/d.png": png((10, 240, 10))}
    for name, data in files.items():
        fs.pipe(f"{BUCKET}/images/{name}", data)
        (tmp_path / name).parent.mkdir(exist_ok=True)
        (tmp_path / name).write_bytes(data)
    remote = ImageFolderDataset(path=f"s3://{BUCKET}/images", image_size=8, credentials=credentials).load()
    local = ImageFolderDataset(path=str(tmp_path), image_size=8).load()
    assert remote["class_names"] == local["class_names"] == ["cat", "dog"]
    np.testing.assert_array_equal(remote["train"]["images"], local["train"]["images"])
    assert remote["checksums"] == local["checksums"]

    fs.pipe(f"{BUCKET}/images/dog/broken.png", b"not a png")
    with pytest.raises(DatasetError, match=f"s3://{BUCKET}/images/dog/broken.png"):
        ImageFolderDataset(path=f"s3://{BUCKET}/images", image_size=8, credentials=credentials).load()
    skipped = ImageFolderDataset(path=f"s3://{BUCKET}/images", image_size=8, credentials=credentials,
                                 skip_unreadable=True).load()
    assert [entry["path"] for entry in skipped["unreadable"]] == [f"s3://{BUCKET}/images/dog/broken.png"]


@pytest.mark.slow  # two runs of data_processing and cnn_training
def test_the_pipelines_run_against_a_bucket_with_versions(s3, tmp_path):
    """`data_root` in conf/local/globals.yml and the credentials in conf/local/credentials.yml, as
    the README says: the raw batches, splits, model, history and reports land in the bucket, one
    version per run, and nothing but training checkpoints touches the local data/ folder."""
    credentials, fs = s3
    project = make_project(tmp_path)
    local = project / "conf/local"
    root = f"s3://{BUCKET}/project"
    (local / "globals.yml").write_text(f"data_root: {root}\n")
    endpoint = credentials["client_kwargs"]["endpoint_url"]
    (local / "credentials.yml").write_text(
        "storage:\n  key: testing\n  secret: testing\n"
        f"  client_kwargs: {{endpoint_url: '{endpoint}', region_name: us-east-1}}\n")
    (local / "catalog.yml").write_text(  # generated raw data: this test has no network
        "raw_source:\n  type: cifar_kedro.datasets.CIFAR10BatchesDataset\n"
        "  path: ${globals:data_root}/01_raw/cifar-10-batches-py\n  credentials: storage\n"
        "  source: synthetic\n  synthetic: {images_per_batch: 100, test_images: 100, seed: 0}\n")
    params = {"cnn_training": {"architecture": "seed_cnn", "seed_cnn": {"epochs": 1}}}
    for _ in range(2):
        run_session(project, "local", params, pipeline_names=["data_processing", "cnn_training"])

    assert fs.exists(f"{BUCKET}/project/01_raw/cifar-10-batches-py/data_batch_5")
    for entry in ("01_raw/raw_batches.npz", "05_model_input/train_split.npz", "06_models/cnn_model.keras",
                  "07_model_output/cnn_history.json", "08_reporting/data_report.csv",
                  "08_reporting/sample_images.png"):
        assert len(fs.ls(f"{BUCKET}/project/{entry}")) == 2, entry  # a version per run
    assert not [p for p in (project / "data").rglob("*") if p.is_file() and "checkpoints" not in p.parts]

    from kedro.framework.session import KedroSession

    with KedroSession.create(project_path=project, env="local") as session:
        catalog = session.load_context().catalog
        model, test = catalog.load("cnn_model"), catalog.load("test_split")
    assert model.predict(test["images"][:8], verbose=0).shape == (8, 10)
    assert len(test["labels"]) == 100
