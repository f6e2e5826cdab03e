"""The between-subject deformation: smooth, invertible, deterministic per subject."""

from pathlib import Path

import numpy as np
import pytest

from datspect import schema
from datspect.cohorts import deform, simulate

CONFIG = schema.with_defaults(schema.load_yaml(Path(__file__).parents[1] / "config.yaml"))
PHYSICS = CONFIG["simulation"]
AFFINE = np.diag([-2.0, 2.0, 2.0, 1.0])


def _geometry():
    return simulate._geometry(PHYSICS, PHYSICS["cameras"]["ppmi"], PHYSICS["pose"]["scale"][0])


def test_random_field_has_the_configured_amplitude_and_smoothness():
    rng = np.random.default_rng(0)
    field = deform.random_field(rng, (40, 44, 40), 2.0, 30.0, 3.0)
    assert field.shape == (3, 40, 44, 40)
    assert 1.5 < float(np.sqrt(np.mean(field**2))) < 4.5
    # smooth: neighbouring voxels differ by a third of the amplitude at most (white noise of
    # that amplitude: by several times it)
    assert float(np.abs(np.diff(field, axis=1)).max()) < 1.0
    assert not deform.random_field(rng, (5, 5, 5), 2.0, 30.0, 0.0).any()


def test_limit_gradient_caps_the_jacobian_norm():
    rng = np.random.default_rng(1)
    rough = deform.random_field(rng, (30, 30, 30), 2.0, 8.0, 6.0)
    assert deform.gradient_norm(rough, 2.0).max() > deform.MAX_GRADIENT
    capped, factor = deform.limit_gradient(rough, 2.0)
    assert factor < 1.0
    assert deform.gradient_norm(capped, 2.0).max() <= deform.MAX_GRADIENT + 1e-6


def test_the_warp_is_invertible_and_its_jacobian_positive():
    geo = _geometry()
    field, summary = deform.draw_deformation(
        np.random.default_rng(2), geo, PHYSICS["anatomy"], age=75.0, age_ref=60.0
    )
    assert field.shape == (3, *geo.shape)
    assert summary["ventricle_scale"] > 1.0  # older than age_ref: enlarged ventricles
    # Jacobian determinant of x -> x + u(x) stays positive (no folding)
    grads = [np.gradient(c, *np.diag(geo.affine)[:3]) for c in field]  # d/d(MNI mm)
    jac = np.array([[grads[i][j] + (i == j) for j in range(3)] for i in range(3)])
    det = np.linalg.det(np.moveaxis(jac, (0, 1), (-2, -1)))
    assert det.min() > 0
    # composing the warp with its inverse gives the identity (inside the grid)
    inverse = deform.invert(field, geo.affine)
    composed = inverse + np.stack([deform.warp(c, inverse, geo.affine) for c in field])
    inner = tuple(slice(8, n - 8) for n in geo.shape)
    assert np.abs(composed[(slice(None), *inner)]).max() < 0.05  # mm


def test_warp_moves_an_image_by_the_displacement():
    image = np.zeros((20, 20, 20), np.float32)
    image[10, 10, 10] = 1.0
    field = np.zeros((3, 20, 20, 20), np.float32)
    field[0] = 2.0  # pull-back: the value at x comes from x + 2 mm, one voxel back in x
    moved = deform.warp(image, field, AFFINE)  # (the grid's x axis runs towards -x)
    assert moved[11, 10, 10] == pytest.approx(1.0)


def test_the_deformation_is_deterministic_per_subject_and_can_be_switched_off():
    cohort = CONFIG["cohorts"]["ppmi"]["simulate"]
    a, truth_a = simulate.simulate_subject("sub-1", 0, cohort, PHYSICS, 7, noise=False)
    b, truth_b = simulate.simulate_subject("sub-1", 0, cohort, PHYSICS, 7, noise=False)
    assert np.array_equal(a.get_fdata(), b.get_fdata())
    assert truth_a["deformation"] == truth_b["deformation"]
    off = {**PHYSICS, "anatomy": {**PHYSICS["anatomy"], **dict.fromkeys(deform.SIZE_KEYS, 0.0)}}
    c, truth_c = simulate.simulate_subject("sub-1", 0, cohort, off, 7, noise=False)
    assert truth_c["deformation"] is None
    assert not np.allclose(a.get_fdata(), c.get_fdata())
    # the other streams are untouched: same pose with and without the deformation
    assert truth_a["pose"] == truth_c["pose"]


@pytest.mark.parametrize("n", [7, 8, 91])
def test_upsample2_is_linear_interpolation_from_every_second_voxel(n):
    coarse = np.random.default_rng(n).standard_normal((3, (n + 1) // 2, 4)).astype(np.float32)
    # the interpolation matrix: fine voxel i lies at coarse position i / 2 (clipped at the edge)
    t = np.minimum(np.arange(n) / 2.0, coarse.shape[1] - 1)
    weights = np.clip(1.0 - np.abs(t[:, None] - np.arange(coarse.shape[1])[None, :]), 0.0, None)
    fine = deform.upsample2(coarse, 1, n)
    assert fine.shape == (3, n, 4)
    np.testing.assert_allclose(fine, np.einsum("ai,dij->daj", weights, coarse), atol=1e-6)
