"""The bad-input catalogue, images: memory bombs, DICOM pixel data that does not match its header,
orientation headers that disagree, and image-level tracebacks (tiny, complex, colour, 0-length,
a template that is not an image).

Every case builds the file in a temporary folder and runs the step that reads it (the ingest
step, ``classify``'s reader or the template loader); none reads or decompresses the bomb's data.
"""

from __future__ import annotations

import gzip
import math
import re
import struct
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from PIL import Image
from test_bad_input import Case, _scan, assert_one_clear_message, image_case, nifti
from test_dicom import write_nm, write_slices

from datspect.deploy.inputs import read_input
from datspect.errors import InputError
from datspect.io import imageio
from datspect.io.dicom import read_dicom
from datspect.space.template import load_template
from datspect.workflow import steps

AFFINE = np.diag([3.9, 3.9, 3.9, 1.0])
ZERO_CHUNK = 16 * 2**20


def _header(shape, dtype=np.float32, affine=AFFINE) -> nib.Nifti1Header:
    header = nib.Nifti1Header()
    header.set_data_shape(shape)
    header.set_data_dtype(dtype)
    header.set_sform(affine, code=1)
    header.set_qform(affine, code=1)
    header["vox_offset"] = 352
    return header


def zeros_gz(header: nib.Nifti1Header, n_bytes: int, name: str, extension: bytes = b""):
    """A .nii.gz of ``n_bytes`` zero bytes after the header: gzip members of 16 MiB of zeros
    concatenated (a valid gzip stream), so a 1.4 GB volume costs 1.3 MB and no memory here."""

    def write(folder: Path) -> Path:
        member = gzip.compress(b"\0" * ZERO_CHUNK, compresslevel=9)
        flag = b"\1\0\0\0" if extension else b"\0\0\0\0"
        parts = [gzip.compress(header.binaryblock + flag + extension)]
        parts += [member] * (n_bytes // ZERO_CHUNK)
        parts.append(gzip.compress(b"\0" * (n_bytes % ZERO_CHUNK)))
        path = folder / name
        path.write_bytes(b"".join(parts))
        return path

    return write


def header_only(shape, name="huge scan.nii.gz"):
    return zeros_gz(_header(shape), 0, name)


def extension_bomb(folder: Path) -> Path:
    """A header extension claiming 1 GiB of zeros (nibabel reads it whole before the data)."""
    esize = 2**30
    header = _header((12, 10, 8))
    header["vox_offset"] = 352 + 16
    write = zeros_gz(header, esize - 8, "extension scan.nii.gz", struct.pack("<ii", esize, 0))
    return write(folder)


def forms(qform_affine, name="my scan.nii.gz"):
    """A scan whose qform is ``qform_affine`` and whose sform is :data:`AFFINE` (both code 1)."""

    def write(folder: Path) -> Path:
        img = nib.Nifti1Image(_scan(), AFFINE)
        img.set_qform(qform_affine, code=1)
        img.set_sform(AFFINE, code=1)
        path = folder / name
        nib.save(img, path)
        return path

    return write


def shifted(mm: float) -> np.ndarray:
    out = AFFINE.copy()
    out[1, 3] += mm
    return out


def colour(folder: Path) -> Path:
    rgb = np.zeros((12, 10, 8), dtype=[("R", "u1"), ("G", "u1"), ("B", "u1")])
    rgb["R"] = 200
    path = folder / "screenshot.nii.gz"
    nib.save(nib.Nifti1Image(rgb, AFFINE), path)
    return path


def zero_length(folder: Path) -> Path:
    path = folder / "empty axis.nii.gz"
    path.write_bytes(gzip.compress(_header((12, 0, 8)).binaryblock + b"\0" * 4))
    return path


FRAMES = np.random.default_rng(0).integers(1, 4000, size=(7, 5, 6)).astype(np.uint16)


def dicom(**extra):
    def write(folder: Path) -> Path:
        return write_nm(folder / "scan.dcm", FRAMES, ipp=[0, 0, 0], iop=[1, 0, 0, 0, 1, 0],
                        pixel_spacing=(2, 2), spacing=2.0, **extra)  # fmt: skip

    return write


def classify_case(write):
    """``write(folder)`` returns the bad scan; the check is ``classify``'s reader."""

    def make(folder: Path):
        scan = write(folder)
        return (lambda: read_input(scan, n_slices=5)), [str(scan)]

    return make


def template_case(write):
    """The template step with ``preprocess.template`` set to the file ``write`` makes."""

    def make(folder: Path):
        path = write(folder)
        out = folder / "out" / "template.nii.gz"

        def check():
            steps.template(out, str(path), fwhm_mm=12.0, striatal_sbr=6.0, scalp_uptake=0.4)

        return check, [str(path), "preprocess.template"]

    return make


def png_template(folder: Path) -> Path:
    path = folder / "my template.png"
    Image.fromarray(np.full((109, 91), 128, np.uint8)).save(path)
    return path


def text_template(folder: Path) -> Path:
    path = folder / "my template.nii"
    path.write_text("not an image\n")
    return path


TOO_MANY = r"voxels \([\d,]+ MiB of data\), above the limit of 134,217,728 voxels \(config images.max_voxels\)"  # noqa: E501
RAISE = r"export the scan again .*or raise images\.max_voxels"
SAME_FORMS = r"nibabel img\.set_qform\(img\.get_sform\(\)\) or fslorient -copysform2qform"
CASES = [
    Case("images: 1.3 MB .nii.gz decompressing to 700^3", image_case(zeros_gz(
            _header((700, 700, 700)), 700**3 * 4, "bomb scan.nii.gz")),
         r"declares 700 x 700 x 700 = 343,000,000 " + TOO_MANY, RAISE),
    Case("images: header claiming 4000^3", image_case(header_only((4000, 4000, 4000))),
         r"declares 4000 x 4000 x 4000 = 64,000,000,000 " + TOO_MANY, RAISE),
    Case("images: classify, header claiming 4000^3", classify_case(header_only((4000,) * 3)),
         r"declares 4000 x 4000 x 4000 = 64,000,000,000 " + TOO_MANY, RAISE),
    Case("images: header extension of 1 GiB", image_case(extension_bomb),
         r"a header extension claims 1,073,741,824 bytes, beyond the start of the data at "
         r"byte 368", r"export the scan again"),
    Case("images: DICOM header claiming 4000 frames of 2048 x 2048",
         image_case(dicom(NumberOfFrames=4000, Rows=2048, Columns=2048)),
         r"declares 4000 x 2048 x 2048 = 16,777,216,000 " + TOO_MANY, RAISE),
    Case("images: DICOM NumberOfFrames below its pixel data", image_case(dicom(NumberOfFrames=5)),
         r"holds 420 bytes \(7 frames\), but Rows x Columns x NumberOfFrames x BitsAllocated/8 "
         r"= 5 x 6 x 5 x 16/8 = 300 bytes", r"NumberOfFrames is too small.*export the series"),
    Case("images: DICOM NumberOfFrames above its pixel data", image_case(dicom(NumberOfFrames=9)),
         r"holds 420 bytes \(7 frames\), but .* = 5 x 6 x 9 x 16/8 = 540 bytes",
         r"the file is truncated, copy it again"),
    Case("images: sform and qform swap left and right", image_case(forms(np.diag([-3.9, 3.9, 3.9, 1]))),  # noqa: E501
         r"the sform \(RAS\) and the qform \(LAS\) disagree \(left and right swapped", SAME_FORMS),
    Case("images: sform and qform 20 mm apart", image_case(forms(shifted(20.0))),
         r"the sform \(RAS\) and the qform \(RAS\) disagree \(up to 20\.0 mm apart\)", SAME_FORMS),
    Case("images: complex-valued data", image_case(nifti(_scan().astype(np.complex64))),
         r"complex-valued data \(NIfTI type complex64\), not a counts image",
         r"export the reconstructed grey-scale volume \(magnitude, real values\)"),
    Case("images: colour (RGB) NIfTI", image_case(colour),
         r"colour data \(NIfTI type RGB\), not a counts image",
         r"export the reconstructed grey-scale volume"),
    Case("images: axis of length 0", image_case(zero_length),
         r"declares shape \(12, 0, 8\), with an axis of length 0", r"export the scan again"),
    Case("images: 2 x 2 x 2 volume", image_case(nifti(_scan((2, 2, 2)))),
         r"shape \(2, 2, 2\) is too small to register to the template \(at least 4 voxels",
         r"list the full reconstructed volume, not a crop"),
    Case("images: template is a PNG", template_case(png_template),
         r"template \(preprocess.template\) is not a NIfTI image", r"give a NIfTI file .* or null"),
    Case("images: template is a text file", template_case(text_template),
         r"unreadable NIfTI file", r"copy or export it again"),
]  # fmt: skip


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.name)
def test_one_clear_message(case, tmp_path):
    assert_one_clear_message(case, tmp_path)


def test_radiological_scan_with_agreeing_forms_is_kept(tmp_path):
    """A negative-determinant affine is normal (radiological storage): kept, voxels unchanged,
    when sform and qform agree; the same file with a flipped qform is refused."""
    radiological = np.diag([-3.9, 3.9, 3.9, 1.0])
    radiological[0, 3] = 40.0
    path = forms(radiological, "radiological.nii.gz")(tmp_path)
    img = nib.load(path)
    img.set_sform(radiological, code=1)
    nib.save(img, path)
    loaded = imageio.load_scan(path)
    np.testing.assert_allclose(loaded.affine, radiological, atol=1e-5)
    np.testing.assert_array_equal(loaded.get_fdata(dtype=np.float32), _scan())
    img.set_qform(AFFINE, code=1)
    nib.save(img, path)
    with pytest.raises(InputError, match="left and right swapped"):
        imageio.load_scan(path)


def test_the_configured_cap_reaches_every_reader(tmp_path):
    """images.max_voxels as the ingest rule passes it: 960 voxels fit a cap of 960, not 959; a
    DICOM folder counts the voxels of all its slices before decoding any."""
    scan = nifti(_scan())(tmp_path)
    out = tmp_path / "ingested.nii.gz"
    steps.ingest_scan(str(scan), str(out), "mine", "s01", max_voxels=960)
    assert nib.load(out).shape == (12, 10, 8)
    with pytest.raises(InputError, match=r"960 voxels .* above the limit of 959 voxels"):
        steps.ingest_scan(str(scan), str(out), "mine", "s01", max_voxels=959)
    with pytest.raises(InputError, match=r"above the limit of 959 voxels"):
        read_input(scan, n_slices=5, max_voxels=959)
    folder = tmp_path / "series"
    write_slices(folder, FRAMES, ipp0=np.zeros(3), iop=[1, 0, 0, 0, 1, 0], pixel_spacing=(2, 2),
                 step=np.array([0, 0, 2.0]))  # fmt: skip
    assert read_dicom(folder, max_voxels=math.prod(FRAMES.shape)).shape == (6, 5, 7)
    first = rf"^{re.escape(str(folder))} \(after IM0006\): the header declares 210 voxels"
    with pytest.raises(InputError, match=first):
        read_dicom(folder, max_voxels=209)


def test_template_over_the_cap_is_refused_before_reading(tmp_path):
    path = header_only((4000, 4000, 4000), "huge template.nii.gz")(tmp_path)
    with pytest.raises(
        InputError,
        match=r"template.nii.gz: the template \(preprocess.template\): the header declares 4000 x",
    ):
        load_template(path)


BEHAVIOUR_TESTS = [
    "test_radiological_scan_with_agreeing_forms_is_kept",
    "test_the_configured_cap_reaches_every_reader",
    "test_template_over_the_cap_is_refused_before_reading",
]
