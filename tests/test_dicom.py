"""DICOM -> NIfTI: affine (voxel -> RAS mm) and voxel values for both DaTscan layouts."""

from __future__ import annotations

import numpy as np
import pydicom
import pytest
from nibabel.affines import voxel_sizes
from pydicom.dataset import Dataset, FileDataset, FileMetaDataset
from pydicom.sequence import Sequence
from pydicom.uid import ExplicitVRLittleEndian, generate_uid
from scipy.spatial.transform import Rotation

from datspect.errors import InputError
from datspect.io.dicom import NM_SOP_CLASS, read_dicom

SC_SOP_CLASS = "1.2.840.10008.5.1.4.1.1.7"  # secondary capture
PT_SOP_CLASS = "1.2.840.10008.5.1.4.1.1.128"


def _base(path, sop_class: str, modality: str, series_uid: str, pixels: np.ndarray) -> FileDataset:
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = sop_class
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = FileDataset(str(path), {}, file_meta=meta, preamble=b"\0" * 128)
    ds.SOPClassUID = sop_class
    ds.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
    ds.Modality = modality
    ds.StudyInstanceUID = "1.2.3.4"
    ds.SeriesInstanceUID = series_uid
    ds.SeriesDescription = f"{modality} test series"
    ds.Rows, ds.Columns = pixels.shape[-2:]
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 0
    ds.PixelData = pixels.astype("<u2").tobytes()
    return ds


def _ds_values(values) -> list[str]:
    """Decimal-string values as a DICOM writer would store them (limited precision)."""
    return [f"{v:.6f}" for v in values]


def write_nm(
    path,
    frames,
    *,
    ipp,
    iop,
    pixel_spacing,
    spacing,
    slope=1.0,
    intercept=0.0,
    in_detector=True,
    geometry=True,
    modality="NM",
    series_uid="1.2.3.4.5",
    **extra,
):
    """NM multi-frame reconstruction: ``frames`` is (slices, rows, columns)."""
    sop = NM_SOP_CLASS if modality == "NM" else PT_SOP_CLASS
    ds = _base(path, sop, modality, series_uid, frames)
    ds.NumberOfFrames = frames.shape[0]
    ds.ImageType = ["ORIGINAL", "PRIMARY", "RECON TOMO", "EMISSION"]
    ds.PixelSpacing = _ds_values(pixel_spacing)
    ds.SpacingBetweenSlices = f"{spacing:.6f}"
    ds.SliceThickness = f"{abs(spacing):.6f}"
    ds.RescaleSlope, ds.RescaleIntercept = f"{slope}", f"{intercept}"
    if geometry:
        holder = Dataset() if in_detector else ds
        holder.ImagePositionPatient = _ds_values(ipp)
        holder.ImageOrientationPatient = _ds_values(iop)
        if in_detector:
            ds.DetectorInformationSequence = Sequence([holder])
    for key, value in extra.items():
        setattr(ds, key, value)
    ds.save_as(path, enforce_file_format=True)
    return path


def write_slices(
    folder,
    frames,
    *,
    ipp0,
    iop,
    pixel_spacing,
    step,
    slopes=None,
    order=None,
    modality="PT",
    series_uid="1.2.3.4.6",
):
    """One file per slice; slice k lies at ``ipp0 + k * step``; files named in ``order``."""
    folder.mkdir(parents=True, exist_ok=True)
    n = frames.shape[0]
    order = range(n) if order is None else order
    paths = []
    for file_no, k in enumerate(order):
        sop = PT_SOP_CLASS if modality == "PT" else SC_SOP_CLASS
        ds = _base(folder / f"IM{file_no:04d}", sop, modality, series_uid, frames[k])
        ds.ImagePositionPatient = _ds_values(np.asarray(ipp0) + k * np.asarray(step))
        ds.ImageOrientationPatient = _ds_values(iop)
        ds.PixelSpacing = _ds_values(pixel_spacing)
        ds.RescaleSlope = f"{1.0 if slopes is None else slopes[k]}"
        ds.RescaleIntercept = "0"
        ds.save_as(folder / f"IM{file_no:04d}", enforce_file_format=True)
        paths.append(folder / f"IM{file_no:04d}")
    return paths


def expected_ras(ipp_k: np.ndarray, iop, pixel_spacing, rows, cols) -> np.ndarray:
    """RAS mm of every pixel of one slice, from DICOM PS3.3 C.7.6.2.1.1 (array rows x cols x 3)."""
    x, y = np.asarray(iop[:3]), np.asarray(iop[3:])
    r, c = np.meshgrid(np.arange(rows), np.arange(cols), indexing="ij")
    lps = ipp_k + c[..., None] * pixel_spacing[1] * x + r[..., None] * pixel_spacing[0] * y
    return lps * np.array([-1.0, -1.0, 1.0])


def check_geometry(img, frames_scaled, positions, iop, pixel_spacing):
    """Every input pixel lands, with its value, at the voxel its DICOM world position maps to."""
    n, rows, cols = frames_scaled.shape
    inv = np.linalg.inv(img.affine)
    data = img.get_fdata()
    assert data.shape == (cols, rows, n)
    for k in range(n):
        world = expected_ras(positions[k], iop, pixel_spacing, rows, cols).reshape(-1, 3)
        vox = world @ inv[:3, :3].T + inv[:3, 3]
        idx = np.rint(vox).astype(int)
        np.testing.assert_allclose(vox, idx, atol=1e-4)
        np.testing.assert_allclose(data[idx[:, 0], idx[:, 1], idx[:, 2]], frames_scaled[k].ravel())


@pytest.fixture
def frames():
    rng = np.random.default_rng(0)
    return rng.integers(0, 4000, size=(7, 5, 6)).astype(np.uint16)


def test_nm_multiframe_standard_transverse(tmp_path, frames):
    iop = [1, 0, 0, 0, 1, 0]
    ipp = np.array([-120.5, -100.25, -40.0])
    path = write_nm(
        tmp_path / "nm scan.dcm",
        frames,
        ipp=ipp,
        iop=iop,
        pixel_spacing=(2.5, 3.0),
        spacing=3.5,
        slope=0.5,
        intercept=10.0,
    )
    img = read_dicom(path)
    assert img.get_data_dtype() == np.float32
    # Explicit affine: x = -(IPP_x + 3.0 i), y = -(IPP_y + 2.5 j), z = IPP_z + 3.5 k.
    expected = np.array(
        [[-3.0, 0, 0, 120.5], [0, -2.5, 0, 100.25], [0, 0, 3.5, -40.0], [0, 0, 0, 1]]
    )
    np.testing.assert_allclose(img.affine, expected, atol=1e-6)
    data = img.get_fdata()
    np.testing.assert_array_equal(data, frames.transpose(2, 1, 0) * 0.5 + 10.0)
    positions = [ipp + k * 3.5 * np.array([0, 0, 1.0]) for k in range(7)]
    check_geometry(img, frames * 0.5 + 10.0, positions, iop, (2.5, 3.0))
    assert img.header.get_sform(coded=True)[1] == 1


@pytest.mark.parametrize("in_detector", [True, False])
def test_nm_multiframe_oblique(tmp_path, frames, in_detector):
    rot = Rotation.from_euler("xyz", [20, -15, 30], degrees=True).as_matrix()
    iop = np.concatenate([rot[:, 0], rot[:, 1]])
    ipp = np.array([10.0, -20.0, 30.0])
    path = write_nm(
        tmp_path / "obl.dcm",
        frames,
        ipp=ipp,
        iop=iop,
        pixel_spacing=(4.0, 3.0),
        spacing=2.0,
        in_detector=in_detector,
    )
    img = read_dicom(path)
    iop_stored = np.array([float(v) for v in _ds_values(iop)])
    normal = np.cross(iop_stored[:3], iop_stored[3:])
    positions = [ipp + k * 2.0 * normal for k in range(frames.shape[0])]
    check_geometry(img, frames.astype(float), positions, iop_stored, (4.0, 3.0))
    np.testing.assert_allclose(voxel_sizes(img.affine), [3.0, 4.0, 2.0], atol=1e-5)


def test_nm_multiframe_negative_spacing_runs_against_normal(tmp_path, frames):
    iop = [1, 0, 0, 0, 1, 0]
    ipp = np.array([0.0, 0.0, 50.0])
    img = read_dicom(
        write_nm(
            tmp_path / "neg.dcm", frames, ipp=ipp, iop=iop, pixel_spacing=(2.0, 2.0), spacing=-4.0
        )
    )
    positions = [ipp + k * -4.0 * np.array([0, 0, 1.0]) for k in range(7)]
    check_geometry(img, frames.astype(float), positions, iop, (2.0, 2.0))
    assert img.affine[2, 2] == pytest.approx(4.0)  # sorted: slices ascend along the normal


@pytest.mark.parametrize(
    ("iop", "step_sign"),
    [
        ([1, 0, 0, 0, 1, 0], 1.0),  # axial, files in shuffled order
        ([-1, 0, 0, 0, 0, -1], -1.0),  # flipped coronal, slices written against the normal
        (None, 1.0),  # oblique
    ],
)
def test_slice_per_file_series(tmp_path, frames, iop, step_sign):
    if iop is None:
        rot = Rotation.from_euler("xyz", [-10, 25, 5], degrees=True).as_matrix()
        iop = np.concatenate([rot[:, 0], rot[:, 1]])
    iop = np.array([float(v) for v in _ds_values(iop)])
    step = step_sign * 3.3 * np.cross(iop[:3], iop[3:])
    ipp0 = np.array([-50.0, 80.0, 12.5])
    slopes = np.linspace(0.5, 2.0, frames.shape[0])
    order = np.random.default_rng(1).permutation(frames.shape[0])
    write_slices(
        tmp_path / "series dir",
        frames,
        ipp0=ipp0,
        iop=iop,
        pixel_spacing=(2.2, 1.8),
        step=step,
        slopes=slopes,
        order=order,
    )
    (tmp_path / "series dir" / "README.txt").write_text("not DICOM")
    img = read_dicom(tmp_path / "series dir")
    positions = [ipp0 + k * step for k in range(frames.shape[0])]
    check_geometry(img, frames * slopes[:, None, None], positions, iop, (2.2, 1.8))
    np.testing.assert_allclose(voxel_sizes(img.affine), [1.8, 2.2, 3.3], atol=1e-5)
    assert np.linalg.det(img.affine[:3, :3]) > 0  # sorted along the normal


@pytest.mark.parametrize("layout", ["nm_multiframe", "slice_per_file"])
def test_affine_agrees_with_simpleitk(tmp_path, frames, layout):
    """An independent reader (SimpleITK/GDCM, LPS) gives the same grid and values."""
    sitk = pytest.importorskip("SimpleITK")
    rot = Rotation.from_euler("xyz", [12, 20, -25], degrees=True).as_matrix()
    iop = np.array([float(v) for v in _ds_values(np.concatenate([rot[:, 0], rot[:, 1]]))])
    if layout == "nm_multiframe":
        source = write_nm(
            tmp_path / "nm.dcm",
            frames,
            ipp=[5.0, 6.0, 7.0],
            iop=iop,
            pixel_spacing=(2.0, 3.0),
            spacing=2.7,
        )
        ref = sitk.ReadImage(str(source))
    else:
        source = tmp_path / "sitk"
        write_slices(
            source,
            frames,
            ipp0=np.array([5.0, 6.0, 7.0]),
            iop=iop,
            pixel_spacing=(2.0, 3.0),
            step=2.7 * np.cross(iop[:3], iop[3:]),
        )
        reader = sitk.ImageSeriesReader()
        reader.SetFileNames(reader.GetGDCMSeriesFileNames(str(source)))
        ref = reader.Execute()
    lps = np.eye(4)
    lps[:3, :3] = np.array(ref.GetDirection()).reshape(3, 3) * np.array(ref.GetSpacing())
    lps[:3, 3] = ref.GetOrigin()
    img = read_dicom(source)
    np.testing.assert_allclose(img.affine, np.diag([-1, -1, 1, 1]) @ lps, atol=1e-4)
    np.testing.assert_allclose(img.get_fdata(), sitk.GetArrayFromImage(ref).transpose(2, 1, 0))


def _non_image(path, sop_class: str, modality: str | None) -> None:
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = sop_class
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = FileDataset(str(path), {}, file_meta=meta, preamble=b"\0" * 128)
    if modality:
        ds.SOPClassUID, ds.Modality, ds.SeriesInstanceUID = sop_class, modality, "9.9.9"
    ds.save_as(path, enforce_file_format=True)


def test_folder_with_one_multiframe_file_and_non_image_files(tmp_path, frames):
    nested = tmp_path / "PPMI" / "3001" / "Reconstructed_DaTSCAN"
    nested.mkdir(parents=True)
    write_nm(
        nested / "I123.dcm",
        frames,
        ipp=[0, 0, 0],
        iop=[1, 0, 0, 0, 1, 0],
        pixel_spacing=(2.0, 2.0),
        spacing=2.0,
    )
    (tmp_path / "PPMI" / ".DS_Store").write_bytes(b"\x00\x01junk")
    _non_image(tmp_path / "PPMI" / "DICOMDIR", "1.2.840.10008.1.3.10", None)
    _non_image(nested / "report.dcm", "1.2.840.10008.5.1.4.1.1.88.22", "SR")
    img = read_dicom(tmp_path / "PPMI")
    assert img.shape == (6, 5, 7)


def test_nm_without_geometry_assumes_transverse_centred(tmp_path, frames):
    path = write_nm(
        tmp_path / "nogeo.dcm",
        frames,
        ipp=None,
        iop=None,
        pixel_spacing=(2.0, 2.0),
        spacing=2.0,
        geometry=False,
    )
    with pytest.warns(UserWarning, match="nogeo.dcm"):
        img = read_dicom(path)
    centre = img.affine @ np.array([(6 - 1) / 2, (5 - 1) / 2, (7 - 1) / 2, 1.0])
    np.testing.assert_allclose(centre[:3], 0.0, atol=1e-9)
    np.testing.assert_allclose(img.affine[:3, :3], np.diag([-2.0, -2.0, 2.0]))


# ---------------------------------------------------------------------------- errors


def test_non_nm_multiframe_without_geometry_is_rejected(tmp_path, frames):
    path = write_nm(
        tmp_path / "pt.dcm",
        frames,
        ipp=None,
        iop=None,
        pixel_spacing=(2.0, 2.0),
        spacing=2.0,
        geometry=False,
        modality="PT",
    )
    with pytest.raises(InputError, match="ImagePositionPatient") as err:
        read_dicom(path)
    assert str(path) in str(err.value)


def test_truncated_file_is_rejected(tmp_path, frames):
    path = write_nm(
        tmp_path / "cut.dcm",
        frames,
        ipp=[0, 0, 0],
        iop=[1, 0, 0, 0, 1, 0],
        pixel_spacing=(2.0, 2.0),
        spacing=2.0,
    )
    raw = path.read_bytes()
    path.write_bytes(raw[: len(raw) - 100])
    with pytest.raises(InputError, match="truncated") as err:
        read_dicom(path)
    assert str(path) in str(err.value)
    path.write_bytes(raw[:300])  # cut inside the header: no pixel data at all
    with pytest.raises(InputError, match="without pixel data") as err:
        read_dicom(path)
    assert str(path) in str(err.value)


def test_truncated_slice_in_folder_is_rejected(tmp_path, frames):
    paths = write_slices(
        tmp_path / "s",
        frames,
        ipp0=np.zeros(3),
        iop=[1, 0, 0, 0, 1, 0],
        pixel_spacing=(2.0, 2.0),
        step=np.array([0, 0, 2.0]),
    )
    raw = paths[0].read_bytes()
    paths[0].write_bytes(raw[:-10])
    with pytest.raises(InputError, match="truncated") as err:
        read_dicom(tmp_path / "s")
    assert str(paths[0]) in str(err.value)


def test_single_2d_image_is_rejected(tmp_path, frames):
    paths = write_slices(
        tmp_path / "one",
        frames[:1],
        ipp0=np.zeros(3),
        iop=[1, 0, 0, 0, 1, 0],
        pixel_spacing=(2.0, 2.0),
        step=np.array([0, 0, 2.0]),
    )
    with pytest.raises(InputError, match="single 2D") as err:
        read_dicom(paths[0])
    assert str(paths[0]) in str(err.value)
    with pytest.raises(InputError, match="single 2D") as err:
        read_dicom(tmp_path / "one")
    assert str(tmp_path / "one") in str(err.value)


def test_mixed_series_are_rejected(tmp_path, frames):
    folder = tmp_path / "mixed"
    write_slices(
        folder / "a",
        frames,
        ipp0=np.zeros(3),
        iop=[1, 0, 0, 0, 1, 0],
        pixel_spacing=(2.0, 2.0),
        step=np.array([0, 0, 2.0]),
        series_uid="1.2.3.1",
    )
    write_slices(
        folder / "b",
        frames,
        ipp0=np.zeros(3),
        iop=[1, 0, 0, 0, 1, 0],
        pixel_spacing=(2.0, 2.0),
        step=np.array([0, 0, 2.0]),
        series_uid="1.2.3.2",
    )
    with pytest.raises(InputError, match="2 different DICOM series") as err:
        read_dicom(folder)
    msg = str(err.value)
    assert str(folder) in msg and "1.2.3.1" in msg and "1.2.3.2" in msg


@pytest.mark.parametrize("defect", ["gap", "duplicate", "orientation", "shape", "no_position"])
def test_inconsistent_slices_are_rejected(tmp_path, frames, defect):
    folder = tmp_path / defect
    paths = write_slices(
        folder,
        frames,
        ipp0=np.zeros(3),
        iop=[1, 0, 0, 0, 1, 0],
        pixel_spacing=(2.0, 2.0),
        step=np.array([0, 0, 2.0]),
    )
    victim = pydicom.dcmread(paths[3])
    if defect == "gap":
        paths[3].unlink()
        expected = "not uniform"
    elif defect == "duplicate":
        victim.ImagePositionPatient = pydicom.dcmread(paths[2]).ImagePositionPatient
        expected = "same position"
    elif defect == "orientation":
        victim.ImageOrientationPatient = [0, 1, 0, 1, 0, 0]
        expected = "ImageOrientationPatient"
    elif defect == "shape":
        victim.Rows, victim.Columns = 6, 5
        expected = "differ in size"
    else:
        del victim.ImagePositionPatient
        expected = "without ImagePositionPatient"
    if defect != "gap":
        victim.save_as(paths[3])
    with pytest.raises(InputError, match=expected) as err:
        read_dicom(folder)
    assert str(folder) in str(err.value) or str(paths[3]) in str(err.value)


def test_projection_data_is_rejected(tmp_path, frames):
    path = write_nm(
        tmp_path / "proj.dcm",
        frames,
        ipp=[0, 0, 0],
        iop=[1, 0, 0, 0, 1, 0],
        pixel_spacing=(2.0, 2.0),
        spacing=2.0,
        ImageType=["ORIGINAL", "PRIMARY", "TOMO", "EMISSION"],
    )
    with pytest.raises(InputError, match="RECON TOMO") as err:
        read_dicom(path)
    assert str(path) in str(err.value)


def test_not_dicom_and_missing(tmp_path):
    junk = tmp_path / "junk.dcm"
    junk.write_text("hello")
    with pytest.raises(InputError, match="not a DICOM file") as err:
        read_dicom(junk)
    assert str(junk) in str(err.value)
    with pytest.raises(InputError, match="not found"):
        read_dicom(tmp_path / "nope")
    (tmp_path / "empty").mkdir()
    with pytest.raises(InputError, match="no DICOM images"):
        read_dicom(tmp_path / "empty")
