"""The exported model (results/model/) and the CNN saliency of the small workflow run."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image
from scipy import ndimage

from datspect import schema
from datspect.cnn import saliency
from datspect.cnn.model import build_model
from datspect.cnn.train import predict
from datspect.deploy import export
from datspect.errors import InputError
from datspect.figures.slab import region_fraction
from datspect.io.tsv import read_tsv

SMALL_ARCH = {"channels": [8, 16, 16], "dense_units": [32]}


def test_integrated_gradients_add_up_to_the_log_odds_and_stay_inside_the_crop():
    torch.manual_seed(0)
    model = build_model(SMALL_ARCH, (109, 91)).eval()
    x = np.random.default_rng(0).gamma(2.0, 1.0, (109, 91)).astype(np.float32)
    attr = saliency.integrated_gradients(model, x, steps=256)
    f_x, f_0 = saliency.log_odds(model, np.stack([x, np.zeros_like(x)]))
    assert attr.sum() == pytest.approx(f_x - f_0, rel=0.02, abs=1e-4)
    rows, cols = model.adapter.slices[2:]
    outside = np.ones(x.shape, bool)
    outside[rows, cols] = False
    assert np.all(attr[outside] == 0) and np.abs(attr[~outside]).sum() > 0


@pytest.fixture(scope="module")
def exported(small_run):
    return small_run / "results" / "model"


@pytest.mark.workflow
def test_export_lists_every_file_with_its_hash_and_needs_no_pickle(exported, small_run):
    manifest = json.loads((exported / "manifest.json").read_text())
    files = {
        p.relative_to(exported).as_posix()
        for p in exported.rglob("*")
        if p.is_file() and p.name != "manifest.json"
    }
    assert files == set(manifest["files"])
    for rel, digest in manifest["files"].items():
        assert export.sha256_file(exported / rel) == digest, rel
    assert {p.rsplit(".", 1)[-1] for p in files} == {"safetensors", "tsv", "gz"}
    splits = sorted(read_tsv(small_run / "results/splits/splits.tsv")["split"].unique())
    assert [m["split"] for m in manifest["cnn"]["models"]] == splits
    # the cutoffs are the workflow's, at full precision
    for row in manifest["sbr"]["cutoffs"]:
        fit = json.loads(
            (
                small_run / f"results/models/{row['method']}/mixed/split-{row['split']}/cutoff.json"
            ).read_text()
        )
        assert row["cutoff"] == fit["cutoff"]
    assert len(manifest["sbr"]["cutoffs"]) == 2 * len(splits)
    assert {m["setting"] for m in manifest["metrics"]} == {"mixed"}
    assert manifest["config"]["sbr"]["reference"] == "brain_without_striatum"
    assert manifest["versions"]["safetensors"] == "0.8.0"
    assert "results/splits/splits.tsv" in manifest["sources"]
    dev = read_tsv(exported / "sbr_development.tsv")
    assert len(dev) == 2 * 30 and set(dev["label"]) == {0, 1}


@pytest.mark.workflow
def test_exported_cnns_reproduce_the_workflow_predictions(exported, small_run):
    """The safetensors weights are the trained ones: same P(reduced) on the same test slabs."""
    model = export.load_model(exported)
    for split, net, calibration in model.cnns:
        assert calibration["method"] == "temperature" and calibration["temperature"] > 0
        pred = read_tsv(small_run / f"results/models/cnn/mixed/split-{split}/predictions.tsv")
        pred = pred[pred["cohort"] == "ppmi"]
        slabs = []
        for row in pred.itertuples():
            with np.load(small_run / f"features/ppmi/{row.subject_id}/cnn_input.npz") as data:
                slabs.append(data[row.image_setting])
        np.testing.assert_allclose(predict(net, slabs, device="cpu"), pred["score"], atol=1e-5)


@pytest.mark.workflow
def test_loading_checks_the_config_against_the_package_schema(exported, tmp_path):
    """`classify` reads an export's config as the workflow does: defaults filled, bad keys named."""
    folder = tmp_path / "model"
    shutil.copytree(exported, folder)
    path = folder / "manifest.json"  # not among the hashed files
    manifest = json.loads(path.read_text())
    del manifest["config"]["slab"]
    path.write_text(json.dumps(manifest))
    assert export.load_model(folder).config["slab"] == schema.defaults("slab")
    manifest["config"]["sbr"]["hv_volum_ml"] = 5.0
    path.write_text(json.dumps(manifest))
    with pytest.raises(
        InputError, match=r"manifest.json: config: key 'sbr': .*'hv_volum_ml'.*re-export"
    ):
        export.load_model(folder)


@pytest.mark.workflow
def test_saliency_of_the_test_images_concentrates_on_the_striatum(small_run):
    splits = read_tsv(small_run / "results/splits/splits.tsv")
    n_test = 2 * int((splits["part"] == "test").sum())  # both images of each test subject
    maps = np.load(small_run / "results/saliency/cnn_saliency_mixed.npz")
    assert int(maps["n_0"]) + int(maps["n_1"]) == n_test
    near = ndimage.binary_dilation(region_fraction("striatum", 5) >= 0.5, iterations=3)
    for label in (0, 1):
        absolute = maps[f"absolute_{label}"]
        inside = absolute[26:90, 13:77]  # the CNN's crop
        assert absolute.sum() == pytest.approx(inside.sum())
        rest = np.zeros_like(near)
        rest[26:90, 13:77] = True
        assert absolute[near].mean() > 1.5 * absolute[rest & ~near].mean(), label
    with Image.open(small_run / "results/figures/cnn_saliency.png") as img:
        assert img.format == "PNG" and img.width > 600


def test_test_images_are_each_splits_test_part_in_both_image_types():
    sheet = pd.DataFrame({"subject_id": ["a", "b", "c"], "label": [0, 1, 1]})
    splits = pd.DataFrame(
        {
            "split": [0, 0, 0, 1, 1, 1],
            "subject_id": ["a", "b", "c"] * 2,
            "part": ["test", "train", "val", "train", "test", "test"],
        }
    )
    rows = saliency.test_images(sheet, splits)
    assert list(zip(rows["split"], rows["subject_id"], rows["image_setting"], strict=True)) == [
        (0, "a", "original"),
        (0, "a", "smoothed"),
        (1, "b", "original"),
        (1, "b", "smoothed"),
        (1, "c", "original"),
        (1, "c", "smoothed"),
    ]
    assert rows["label"].tolist() == [0, 0, 1, 1, 1, 1]
