"""Per-cohort bundles of the per-subject CNN inputs."""

from __future__ import annotations

import numpy as np
import pytest

from datspect.errors import InputError
from datspect.features.cnn_bundle import bundle_inputs, load_inputs


def _subject(root, subject, **arrays):
    path = root / "ppmi" / subject / "cnn_input.npz"
    path.parent.mkdir(parents=True)
    np.savez(path, **arrays)
    return path


def test_bundle_round_trip_keeps_every_subject_and_setting(tmp_path):
    rng = np.random.default_rng(0)
    arrays = {
        s: {k: rng.random((4, 3), dtype=np.float32) for k in ("original", "smoothed")}
        for s in ("ppmi-0002", "ppmi-0001")
    }
    paths = [_subject(tmp_path, s, **a) for s, a in arrays.items()]
    out = tmp_path / "ppmi" / "cnn_inputs.npz"
    assert "2 subjects" in bundle_inputs(paths, out)
    loaded = load_inputs(out)
    assert set(loaded) == {("ppmi", s) for s in arrays}
    for s, a in arrays.items():
        for k, v in a.items():
            np.testing.assert_array_equal(loaded[("ppmi", s)][k], v)


def test_bundle_refuses_subjects_with_different_image_settings(tmp_path):
    a = _subject(tmp_path, "ppmi-0001", original=np.zeros((2, 2)), smoothed=np.zeros((2, 2)))
    b = _subject(tmp_path, "ppmi-0002", original=np.zeros((2, 2)))
    out = tmp_path / "ppmi" / "cnn_inputs.npz"
    with pytest.raises(InputError, match="ppmi-0002/cnn_input.npz: holds image settings"):
        bundle_inputs([a, b], out)
    assert not out.exists()
