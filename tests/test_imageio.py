"""load_scan validation and dispatch; atomic writes."""

from __future__ import annotations

import gzip
import os
import signal
import stat
import subprocess
import sys
from pathlib import Path

import nibabel as nib
import numpy as np
import pandas as pd
import pytest
from pydicom.dataset import Dataset, FileDataset, FileMetaDataset
from pydicom.sequence import Sequence
from pydicom.uid import ExplicitVRLittleEndian, generate_uid

from datspect.errors import InputError
from datspect.io.imageio import (
    atomic_output,
    atomic_write_bytes,
    atomic_write_text,
    load_scan,
    save_nifti,
)

REPO = Path(__file__).resolve().parents[1]
OBLIQUE = np.array(
    [
        [-3.6, 0.9, 0.3, 120.0],
        [0.8, 3.7, -0.4, -90.0],
        [-0.4, 0.3, 4.1, -60.0],
        [0.0, 0.0, 0.0, 1.0],
    ]
)


def _scan(shape=(12, 10, 8), seed=0) -> np.ndarray:
    """A positive blob with a little FBP-like negative noise."""
    rng = np.random.default_rng(seed)
    grid = np.indices(shape).astype(float)
    centre = (np.array(shape) - 1)[:, None, None, None] / 2
    blob = 100 * np.exp(-((grid - centre) ** 2).sum(0) / 8)
    return (blob + rng.normal(0, 0.5, shape)).astype(np.float32)


def _save(path: Path, data: np.ndarray, affine=OBLIQUE) -> Path:
    nib.save(nib.Nifti1Image(data, affine), path)
    return path


def _assert_names(err: pytest.ExceptionInfo, path: Path) -> None:
    assert str(path) in str(err.value)


# ---------------------------------------------------------------------------- loading


@pytest.mark.parametrize("name", ["sub 01 scan.nii.gz", "sub-01.v2.nii", "UPPER.NII.GZ"])
def test_nifti_round_trip_keeps_affine_and_values(tmp_path, name):
    data = _scan()
    path = _save(tmp_path / name, data)
    img = load_scan(path)
    assert img.get_data_dtype() == np.float32
    np.testing.assert_allclose(img.affine, OBLIQUE, atol=1e-5)
    np.testing.assert_allclose(img.get_fdata(), data, rtol=1e-6)


def test_scaled_integer_nifti_is_rescaled(tmp_path):
    data = np.rint(_scan()).clip(0, None).astype(np.int16)
    img = nib.Nifti1Image(data, np.diag([2.0, 2.0, 2.0, 1.0]))
    img.header.set_slope_inter(0.25, 3.0)
    nib.save(img, tmp_path / "int.nii")
    out = load_scan(tmp_path / "int.nii")
    np.testing.assert_allclose(out.get_fdata(), data * 0.25 + 3.0)


def test_sform_code_is_kept(tmp_path):
    img = nib.Nifti1Image(_scan(), OBLIQUE)
    img.header.set_sform(OBLIQUE, code=4)  # MNI
    nib.save(img, tmp_path / "mni.nii.gz")
    assert load_scan(tmp_path / "mni.nii.gz").header.get_sform(coded=True)[1] == 4


def test_singleton_4d_is_squeezed(tmp_path):
    data = _scan()[..., None]
    img = load_scan(_save(tmp_path / "one volume.nii.gz", data))
    assert img.shape == data.shape[:3]


def test_dicom_file_and_folder_are_dispatched(tmp_path):
    frames = np.random.default_rng(3).integers(1, 1000, size=(4, 5, 6)).astype(np.uint16)
    folder = tmp_path / "dicom folder"
    folder.mkdir()
    path = folder / "IM 0001"  # no extension: recognised by the DICM marker
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = "1.2.840.10008.5.1.4.1.1.20"
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = FileDataset(str(path), {}, file_meta=meta, preamble=b"\0" * 128)
    ds.SOPClassUID, ds.SOPInstanceUID = meta.MediaStorageSOPClassUID, generate_uid()
    ds.Modality, ds.SeriesInstanceUID = "NM", "1.2.3"
    ds.NumberOfFrames, ds.Rows, ds.Columns = 4, 5, 6
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 0
    ds.PixelSpacing, ds.SpacingBetweenSlices = ["2.0", "3.0"], "4.0"
    detector = Dataset()
    detector.ImagePositionPatient = ["1.0", "2.0", "3.0"]
    detector.ImageOrientationPatient = ["1", "0", "0", "0", "1", "0"]
    ds.DetectorInformationSequence = Sequence([detector])
    ds.PixelData = frames.astype("<u2").tobytes()
    ds.save_as(path, enforce_file_format=True)
    expected = np.array([[-3.0, 0, 0, -1.0], [0, -2.0, 0, -2.0], [0, 0, 4.0, 3.0], [0, 0, 0, 1]])
    for source in (path, folder):
        img = load_scan(source)
        np.testing.assert_allclose(img.affine, expected)
        np.testing.assert_array_equal(img.get_fdata(), frames.transpose(2, 1, 0))


# ---------------------------------------------------------------------------- errors


def test_missing_file(tmp_path):
    path = tmp_path / "no such scan.nii.gz"
    with pytest.raises(InputError, match="not found") as err:
        load_scan(path)
    _assert_names(err, path)


def test_unsupported_format(tmp_path):
    path = tmp_path / "scan.txt"
    path.write_text("hello")
    with pytest.raises(InputError, match="unsupported image format") as err:
        load_scan(path)
    _assert_names(err, path)


@pytest.mark.parametrize("damage", ["truncated_gz", "truncated_nii", "garbage_nii", "plain_as_gz"])
def test_damaged_nifti(tmp_path, damage):
    good_gz = _save(tmp_path / "good.nii.gz", _scan())
    good_nii = _save(tmp_path / "good.nii", _scan())
    path = tmp_path / f"bad {damage}.nii{'.gz' if damage.endswith('gz') else ''}"
    if damage == "truncated_gz":
        raw = good_gz.read_bytes()
        path.write_bytes(raw[: len(raw) // 2])
    elif damage == "truncated_nii":
        raw = good_nii.read_bytes()
        path.write_bytes(raw[: len(raw) - 500])
    elif damage == "garbage_nii":
        path.write_bytes(np.random.default_rng(0).bytes(2000))
    else:
        path.write_bytes(good_nii.read_bytes())  # uncompressed data named .nii.gz
    with pytest.raises(InputError, match="unreadable NIfTI") as err:
        load_scan(path)
    _assert_names(err, path)


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (np.ones((12, 10), np.float32), "2D image"),
        (np.ones((12, 10, 1), np.float32), "2D image"),
        (np.ones((12, 10, 8, 3), np.float32), "4D image"),
        (np.zeros((12, 10, 8), np.float32), "every voxel is 0"),
        (-_scan(), "negative"),
    ],
)
def test_bad_data(tmp_path, data, message):
    path = _save(tmp_path / "bad data.nii.gz", data)
    with pytest.raises(InputError, match=message) as err:
        load_scan(path)
    _assert_names(err, path)


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_non_finite_voxels(tmp_path, bad):
    data = _scan()
    data[3, 4, 5] = bad
    data[0, 0, 0] = bad
    path = _save(tmp_path / "nan.nii.gz", data)
    with pytest.raises(InputError, match="2 voxels are NaN or infinite") as err:
        load_scan(path)
    _assert_names(err, path)


def test_negative_fraction_threshold(tmp_path):
    data = _scan()
    data[:2] = -data.max()  # a large negative slab: ~30 % of the absolute mass
    path = _save(tmp_path / "neg.nii", data)
    frac = -data[data < 0].sum() / np.abs(data).sum()
    assert 0.1 < frac < 0.9
    with pytest.raises(InputError, match="negative"):
        load_scan(path, max_negative_fraction=frac - 0.01)
    assert load_scan(path, max_negative_fraction=frac + 0.01).shape == data.shape


@pytest.mark.parametrize("row", [[0.0, 0.0, 0.0, 0.0], [np.nan, 0.0, 2.0, 0.0]])
def test_bad_affine(tmp_path, row):
    header = nib.Nifti1Header()
    header.set_data_shape((12, 10, 8))
    header.set_data_dtype(np.float32)
    header["srow_x"], header["srow_y"], header["srow_z"] = [2, 0, 0, 0], [0, 2, 0, 0], row
    header["sform_code"], header["qform_code"] = 1, 0
    path = tmp_path / "bad affine.nii"
    nib.save(nib.Nifti1Image(_scan(), None, header=header), path)
    with pytest.raises(InputError, match="affine is singular or not finite") as err:
        load_scan(path)
    _assert_names(err, path)


# ---------------------------------------------------------------------------- writing


def test_save_nifti_creates_parents_and_round_trips(tmp_path):
    data = _scan()
    target = tmp_path / "deep" / "er dir" / "out scan.nii.gz"
    img = nib.Nifti1Image(data, OBLIQUE)
    img.header.set_sform(OBLIQUE, code=2)
    assert save_nifti(img, target) == target
    back = nib.load(target)
    assert back.get_data_dtype() == np.float32
    assert back.header.get_sform(coded=True)[1] == 2
    np.testing.assert_allclose(back.get_fdata(), data)
    np.testing.assert_allclose(back.affine, OBLIQUE, atol=1e-5)
    with gzip.open(target) as fh:
        assert len(fh.read()) > 0
    assert sorted(p.name for p in target.parent.iterdir()) == [target.name]


def test_save_nifti_integer_dtype_and_stale_scaling(tmp_path):
    source = nib.Nifti1Image(np.arange(24, dtype=np.int16).reshape(2, 3, 4), np.eye(4))
    source.header.set_slope_inter(0.5, 1.0)
    nib.save(source, tmp_path / "scaled.nii")
    loaded = nib.load(tmp_path / "scaled.nii")  # values 1.0 .. 12.5
    save_nifti(loaded, tmp_path / "f.nii")
    np.testing.assert_allclose(nib.load(tmp_path / "f.nii").get_fdata(), loaded.get_fdata())
    save_nifti(loaded, tmp_path / "i.nii", dtype=np.int16)
    back = nib.load(tmp_path / "i.nii")
    assert back.get_data_dtype() == np.int16
    np.testing.assert_allclose(back.get_fdata(), loaded.get_fdata(), atol=1e-3)


def test_atomic_output_keeps_old_file_and_cleans_up_on_error(tmp_path):
    target = tmp_path / "table.tsv"
    target.write_text("old\n")
    with pytest.raises(RuntimeError), atomic_output(target) as tmp:
        tmp.write_text("half")
        raise RuntimeError("writer crashed")
    assert target.read_text() == "old\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["table.tsv"]
    with pytest.raises(FileNotFoundError), atomic_output(tmp_path / "never.tsv"):
        pass  # a writer that wrote nothing must not count as success
    assert not (tmp_path / "never.tsv").exists()


def test_atomic_output_keeps_extension_for_format_inference(tmp_path):
    frame = pd.DataFrame({"a": [1, 2], "b": ["x", "y"]})
    with atomic_output(tmp_path / "t.tsv.gz") as tmp:
        assert tmp.name.endswith(".tsv.gz") and tmp.name.startswith(".")
        frame.to_csv(tmp, sep="\t", index=False)  # compression inferred from the name
    assert (tmp_path / "t.tsv.gz").read_bytes()[:2] == b"\x1f\x8b"
    pd.testing.assert_frame_equal(pd.read_csv(tmp_path / "t.tsv.gz", sep="\t"), frame)
    with atomic_output(tmp_path / "a.npy") as tmp:
        np.save(tmp, np.arange(3))  # np.save appends .npy unless the name ends with it
    np.testing.assert_array_equal(np.load(tmp_path / "a.npy"), np.arange(3))


def test_atomic_write_text_and_bytes(tmp_path):
    old_umask = os.umask(0o022)
    try:
        path = atomic_write_text(tmp_path / "new dir" / "r é.txt", "ligne é\n")
    finally:
        os.umask(old_umask)
    assert path.read_text(encoding="utf-8") == "ligne é\n"
    assert stat.S_IMODE(path.stat().st_mode) == 0o644  # honours the umask, unlike mkstemp
    atomic_write_bytes(path, b"\x00\x01")
    assert path.read_bytes() == b"\x00\x01"


def test_killed_writer_leaves_no_output(tmp_path):
    target = tmp_path / "out.nii.gz"
    code = (
        "import os, signal, sys\n"
        "from datspect.io.imageio import atomic_output\n"
        "with atomic_output(sys.argv[1]) as tmp:\n"
        "    tmp.write_bytes(b'partial')\n"
        "    os.kill(os.getpid(), signal.SIGKILL)\n"
    )
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = subprocess.run([sys.executable, "-c", code, str(target)], env=env, check=False)
    assert proc.returncode == -signal.SIGKILL
    assert not target.exists()
    leftovers = list(tmp_path.iterdir())
    assert all(p.name.startswith(".out.nii.gz.") for p in leftovers)
