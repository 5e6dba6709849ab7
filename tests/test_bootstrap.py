"""kd.metrics.bootstrap: exact expectations on small inputs, plus the properties that make an interval useful."""

import json
import math

import numpy as np
import pytest

from kd.metrics.bootstrap import Interval, Paired, interval, paired, resample_indices

SMALL = [3.0, 1.0, 4.0, 1.0, 5.0, 9.0, 2.0, 6.0]


def test_resample_indices_is_the_documented_numpy_call():
    got = resample_indices(8, resamples=50, seed=3)
    assert got.shape == (50, 8)
    np.testing.assert_array_equal(got, np.random.default_rng(3).integers(0, 8, size=(50, 8)))
    assert got.min() >= 0 and got.max() <= 7


def test_resample_indices_same_arguments_same_indices_other_seed_other_indices():
    np.testing.assert_array_equal(resample_indices(20, seed=5), resample_indices(20, seed=5))
    assert not np.array_equal(resample_indices(20, seed=5), resample_indices(20, seed=6))


def test_interval_equals_direct_resampling():
    values, resamples, seed = np.array(SMALL), 200, 7
    idx = np.random.default_rng(seed).integers(0, len(values), size=(resamples, len(values)))
    means = values[idx].mean(axis=1)
    low, high = np.percentile(means, [2.5, 97.5])
    got = interval(SMALL, resamples=resamples, seed=seed)
    assert got == Interval(mean=float(values.mean()), low=float(low), high=float(high))


def test_interval_contains_the_point_estimate():
    values = np.random.default_rng(0).normal(30.0, 10.0, size=300)
    got = interval(values)
    assert got.low < got.mean < got.high
    assert got.mean == pytest.approx(values.mean())


def test_interval_narrows_as_examples_grow():
    draws = np.random.default_rng(1).exponential(20.0, size=5000)
    few, many = interval(draws[:50], seed=2), interval(draws, seed=2)
    assert (many.high - many.low) < (few.high - few.low) / 4  # width ~ 1/sqrt(n): 10x fewer -> ~3.2x


def test_confidence_widens_the_interval():
    narrow, wide = interval(SMALL, confidence=0.5), interval(SMALL, confidence=0.99)
    assert wide.low <= narrow.low and narrow.high <= wide.high


def test_paired_equals_direct_resampling():
    a, b = np.array(SMALL), np.array([2.0, 2.0, 3.0, 1.5, 4.0, 7.0, 2.5, 5.0])
    idx = np.random.default_rng(11).integers(0, 8, size=(300, 8))
    means = (a - b)[idx].mean(axis=1)
    low, high = np.percentile(means, [5.0, 95.0])
    got = paired(a, b, resamples=300, seed=11, confidence=0.9)
    assert got == Paired(mean_diff=float((a - b).mean()), low=float(low), high=float(high),
                         share_le_0=float(np.mean(means <= 0)))


def test_model_paired_with_itself_is_exactly_zero():
    got = paired(SMALL, SMALL)
    assert got == Paired(mean_diff=0.0, low=0.0, high=0.0, share_le_0=1.0)


def test_paired_clear_winner_and_clear_loser():
    a = np.arange(40, dtype=float)
    assert paired(a + 5.0, a).share_le_0 == 0.0
    assert paired(a, a + 5.0).share_le_0 == 1.0
    assert paired(a + 5.0, a).mean_diff == pytest.approx(5.0)


def test_deterministic_across_calls():
    values = np.random.default_rng(4).normal(size=97)
    assert interval(values, seed=9) == interval(values, seed=9)
    assert paired(values, values[::-1], seed=9) == paired(values, values[::-1], seed=9)


def test_as_dict_rounds_for_json():
    got = Paired(mean_diff=1.234567, low=-0.000049, high=2.5, share_le_0=0.12345).as_dict()
    assert got == {"mean_diff": 1.2346, "low": -0.0, "high": 2.5, "share_le_0": 0.1235}
    assert Interval(mean=1 / 3, low=0.1, high=0.9).as_dict(digits=2) == {"mean": 0.33, "low": 0.1, "high": 0.9}
    json.dumps(interval(SMALL).as_dict())  # plain floats, not numpy scalars
    assert all(type(v) is float for v in interval(SMALL).as_dict().values())


@pytest.mark.parametrize("values, match", [
    ([], "empty"),
    ([1.0, math.nan], "finite; position 1"),
    ([1.0, math.inf, 2.0], "finite; position 1"),
    ([[1.0, 2.0]], "one-dimensional"),
])
def test_interval_rejects_bad_values(values, match):
    with pytest.raises(ValueError, match=match):
        interval(values)


def test_bad_arguments_are_errors():
    with pytest.raises(ValueError, match="a has 3, b has 2"):
        paired([1.0, 2.0, 3.0], [1.0, 2.0])
    with pytest.raises(ValueError, match="b must be finite"):
        paired([1.0, 2.0], [1.0, math.nan])
    with pytest.raises(ValueError, match="confidence"):
        interval(SMALL, confidence=1.0)
    with pytest.raises(ValueError, match="resamples"):
        interval(SMALL, resamples=0)
    with pytest.raises(ValueError, match="at least one"):
        resample_indices(0)


def test_gap_closed_is_the_share_of_the_teachers_lead_with_a_paired_interval():
    from kd.metrics.bootstrap import gap_closed

    control = np.array([10.0, 20.0, 30.0, 40.0])
    teacher = control + 10.0
    half = gap_closed(control + 5.0, control, teacher, resamples=200)
    assert half.mean == pytest.approx(50.0) and half.low == pytest.approx(50.0) and half.high == pytest.approx(50.0)
    noisy = gap_closed(control + np.array([0.0, 10.0, 0.0, 10.0]), control, teacher, resamples=500)
    assert noisy.mean == pytest.approx(50.0) and noisy.low < 50.0 < noisy.high
    assert gap_closed(control - 2.0, control, teacher).mean == pytest.approx(-20.0)  # worse than the control
    with pytest.raises(ValueError, match="one score per example"):
        gap_closed([1.0], [1.0, 2.0], [3.0, 4.0])


def test_the_report_gives_each_student_its_share_of_the_gap():
    from kd.report.results import gap_block, gap_cell

    rows = lambda values: [{"rougeL": v} for v in values]  # noqa: E731
    block = gap_block(rows([60.0, 70.0]), rows([40.0, 50.0]), rows([80.0, 90.0]))
    assert block["mean"] == pytest.approx(50.0)
    assert gap_cell({"gap_closed": 50.0, "gap_closed_low": 41.2, "gap_closed_high": 58.9}) == "50% [41, 59]"
    assert gap_block(rows([1.0]), rows([1.0, 2.0]), rows([3.0, 4.0])) is None and gap_cell({}) == "-"


# --- two levels: training seeds, then examples -------------------------------------------------

def test_two_level_draws_are_the_documented_numpy_calls():
    from kd.metrics.bootstrap import resample_seeds_and_examples

    examples, seeds = resample_seeds_and_examples(3, 8, resamples=50, seed=4)
    rng = np.random.default_rng(4)
    np.testing.assert_array_equal(examples, rng.integers(0, 8, size=(50, 8)))
    np.testing.assert_array_equal(seeds, rng.integers(0, 3, size=(50, 3)))
    np.testing.assert_array_equal(examples, resample_indices(8, resamples=50, seed=4))  # examples first
    with pytest.raises(ValueError, match="0 seeds"):
        resample_seeds_and_examples(0, 8)


def test_two_level_equals_direct_resampling_of_seeds_then_examples():
    """By hand, one resample at a time: draw the seeds, then the examples (shared by every drawn seed)."""
    from kd.metrics.bootstrap import two_level_paired

    rng = np.random.default_rng(0)
    a, b = rng.normal(50, 10, size=(4, 30)), rng.normal(45, 10, size=(4, 30))
    draws = np.random.default_rng(6)
    examples, seeds = draws.integers(0, 30, size=(300, 30)), draws.integers(0, 4, size=(300, 4))
    means = np.array([np.mean([(a - b)[s, examples[r]].mean() for s in seeds[r]]) for r in range(300)])
    low, high = np.percentile(means, [5.0, 95.0])
    got = two_level_paired(a, b, resamples=300, seed=6, confidence=0.9)
    assert got.mean_diff == pytest.approx((a - b).mean())
    assert (got.low, got.high) == (pytest.approx(low), pytest.approx(high))
    assert got.share_le_0 == float(np.mean(means <= 0))
    # the chunking is only about memory
    from kd.metrics.bootstrap import two_level_means
    np.testing.assert_allclose(two_level_means(a - b, resamples=300, seed=6, chunk=7)[0], means)


def test_one_seed_reduces_to_the_one_level_bootstrap():
    from kd.metrics.bootstrap import gap_closed, two_level_gap_closed, two_level_paired

    a, b = np.array(SMALL), np.array([2.0, 2.0, 3.0, 1.5, 4.0, 7.0, 2.5, 5.0])
    assert two_level_paired(a[None], b[None], resamples=300, seed=11) == paired(a, b, resamples=300, seed=11)
    t = a + 4.0
    assert two_level_gap_closed(a[None], b[None], t[None], resamples=300, seed=2) == \
        gap_closed(a, b, t, resamples=300, seed=2)


def test_seeds_that_disagree_widen_the_interval_where_examples_alone_see_nothing():
    """Articles agree, seeds do not: one student is +5, -5 and 0 against the control depending on its training
    seed, the same on every article. The seed-averaged per-article difference is 0 everywhere, so an interval
    over articles alone is [0, 0]; the training noise is only visible when the seeds are resampled too."""
    from kd.metrics.bootstrap import two_level_gap_closed, two_level_paired

    articles = np.random.default_rng(1).uniform(20, 80, size=60)
    control = np.tile(articles, (3, 1))  # (3 seeds, 60 articles)
    student = control + np.array([5.0, -5.0, 0.0])[:, None]
    examples_only = paired(student.mean(axis=0), control.mean(axis=0))
    assert examples_only.high - examples_only.low == pytest.approx(0.0, abs=1e-9)
    two_level = two_level_paired(student, control)
    assert two_level.mean_diff == pytest.approx(0.0)
    assert two_level.high - two_level.low > 5.0  # seeds of +5, -5, 0: means from -5 to +5 in thirds
    assert two_level.low <= -3.0 and two_level.high >= 3.0
    assert 0.3 < two_level.share_le_0 < 0.9
    # and the share of the gap: the teacher leads by 10 everywhere, the student closes +50%, -50% or 0%
    teacher = control + 10.0
    share = two_level_gap_closed(student, control, teacher)
    assert share.mean == pytest.approx(0.0) and share.high - share.low > 50.0


def test_two_level_bad_shapes_are_errors_that_say_what():
    from kd.metrics.bootstrap import two_level_gap_closed, two_level_paired

    with pytest.raises(ValueError, match=r"a must be \(seeds, examples\)"):
        two_level_paired([1.0, 2.0], [1.0, 2.0])
    with pytest.raises(ValueError, match=r"shapes a \(2, 2\), b \(1, 2\)"):
        two_level_paired([[1.0, 2.0], [3.0, 4.0]], [[1.0, 2.0]])
    with pytest.raises(ValueError, match="teacher must be finite; seed row 1, example 0"):
        two_level_gap_closed([[1.0], [2.0]], [[0.0], [0.0]], [[3.0], [math.nan]])
