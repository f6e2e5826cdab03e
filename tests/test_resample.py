"""datspect.space.resample: SimpleITK's trilinear sampling against scipy.ndimage's."""

import numpy as np
import pytest
from scipy import ndimage

from datspect.space.resample import affine_resample


def _case():
    rng = np.random.default_rng(3)
    data = (rng.random((30, 40, 25)) + 1).astype(np.float32)
    angle = 0.3
    matrix = np.eye(4)
    matrix[:3, :3] = 0.7 * np.array(
        [[np.cos(angle), -np.sin(angle), 0], [np.sin(angle), np.cos(angle), 0], [0, 0, 1]]
    )
    matrix[:3, 3] = [5.0, -3.0, 2.0]
    return data, matrix, (45, 45, 35)


def _mapped(matrix, shape):
    ijk = np.indices(shape).reshape(3, -1)
    return (matrix[:3, :3] @ ijk + matrix[:3, 3:]).T.reshape(*shape, 3)


@pytest.mark.parametrize("order", [0, 1])
def test_equals_ndimage_between_the_outermost_voxel_centres(order):
    data, matrix, shape = _case()
    ours = affine_resample(data, matrix, shape, order=order)
    theirs = ndimage.affine_transform(
        data, matrix[:3, :3], matrix[:3, 3], output_shape=shape, order=order, cval=0.0
    )
    assert ours.dtype == np.float32 and ours.shape == shape
    p = _mapped(matrix, shape)
    inside = np.all((p >= 0.01) & (p <= np.array(data.shape) - 1.01), axis=-1)
    assert inside.sum() > 1000
    np.testing.assert_allclose(ours[inside], theirs[inside], rtol=0, atol=1e-5)


def test_zero_beyond_the_outer_faces():
    data, matrix, shape = _case()
    ours = affine_resample(data, matrix, shape)
    p = _mapped(matrix, shape)
    outside = np.any((p < -0.51) | (p > np.array(data.shape) - 0.49), axis=-1)
    assert outside.sum() > 1000
    assert np.all(ours[outside] == 0)


def test_unknown_order_is_refused():
    data, matrix, shape = _case()
    with pytest.raises(ValueError, match="order"):
        affine_resample(data, matrix, shape, order=3)
