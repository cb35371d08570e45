"""The one tolerance rule every parity check uses (graders/checks/compare.py)."""
import numpy as np
import pytest

from graders.checks import CheckFailed
from polyglot_lab.checking.compare import close, expect_close, max_diff, tolerance


def test_the_bar_is_atol_below_one_and_grows_with_the_outputs():
    assert tolerance([0.5], 1e-5) == 1e-5
    assert tolerance([-200.0, 3.0], 1e-5) == pytest.approx(2e-3)
    assert tolerance([200.0], atol=1e-5, rtol=0.0) == 1e-5  # rtol=0: absolute only


def test_scalars_arrays_nans_and_shapes():
    assert max_diff(1.0, 1.25) == 0.25
    assert max_diff([np.nan, 1.0], [np.nan, 1.0]) == 0.0     # NaN where NaN was expected agrees
    assert np.isnan(max_diff([np.nan], [1.0])) and not close([np.nan], [1.0])
    assert max_diff(np.zeros((2, 3)), np.zeros((3, 2))) == float("inf")
    assert close(np.float32(1.0) + 5e-6, 1.0) and not close(1.0 + 5e-5, 1.0)


def test_expect_close_names_what_and_fills_in_the_bar_and_the_difference():
    assert expect_close([1.0, 2.0], [1.0, 2.0 + 1e-6], "the logits") == pytest.approx(1e-6)
    with pytest.raises(CheckFailed) as failure:
        expect_close([1.0, 2.5], [1.0, 2.0], "The ported model's logits", hint="copy the bias too")
    assert failure.value.message == "The ported model's logits: the outputs differ."
    assert failure.value.expected == "max abs diff <= 2e-05" and failure.value.found == "max abs diff 0.5"
    assert failure.value.hint == "copy the bias too"
    with pytest.raises(CheckFailed, match="wrong shape") as failure:
        expect_close(np.zeros((4, 10)), np.zeros((4, 2)), "The logits")
    assert "(4, 10)" in failure.value.found and "(4, 2)" in failure.value.expected
    with pytest.raises(CheckFailed, match="left in train mode"):
        expect_close([0.0], [1.0], "predict", mistake="The model was left in train mode.")
