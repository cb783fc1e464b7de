"""Target models for k-shot fine-tuning and their blend (napbench.zoo.gennape.blend)."""

from __future__ import annotations

from math import comb

import numpy as np
import pytest
from scipy.stats import spearmanr

from napbench.errors import InvalidArgumentError
from napbench.zoo.gennape.blend import EmbeddingGP, simplex_grid, simplex_weights
from napbench.zoo.wl import WLRidge


@pytest.mark.parametrize(("parts", "step"), [(1, 0.5), (2, 0.25), (3, 0.1), (4, 0.2)])
def test_simplex_grid_is_every_weight_vector_on_the_grid(parts: int, step: float) -> None:
    g = simplex_grid(parts, step)
    n = round(1 / step)
    assert g.shape == (comb(n + parts - 1, parts - 1), parts)
    np.testing.assert_allclose(g.sum(1), 1.0)
    assert (g >= 0).all()
    np.testing.assert_allclose(np.round(g * n), g * n, atol=1e-12)
    assert len({tuple(r) for r in np.round(g * n).astype(int).tolist()}) == len(g)
    assert g[0].tolist() == [1.0] + [0.0] * (parts - 1)
    assert (np.diff(g[:, 0]) <= 0).all()  # most weight on the first part first


def test_simplex_grid_rejects_a_step_that_does_not_divide_one() -> None:
    with pytest.raises(InvalidArgumentError, match="step"):
        simplex_grid(3, 0.3)
    with pytest.raises(InvalidArgumentError, match="parts"):
        simplex_grid(0, 0.1)


def test_simplex_weights_score_each_blend_by_its_spearman_correlation() -> None:
    rng = np.random.default_rng(0)
    y = rng.normal(size=40)
    loo = np.stack([y + rng.normal(scale=s, size=40) for s in (2.0, 0.3, 1.0)])
    w, s = simplex_weights(loo, y, step=0.1)
    grid = simplex_grid(3, 0.1)
    ref = [spearmanr(g @ loo, y).statistic for g in grid]
    assert s == pytest.approx(max(ref), abs=1e-12)
    assert spearmanr(w @ loo, y).statistic == pytest.approx(s, abs=1e-12)
    assert w[1] >= 0.5  # the least noisy part carries the blend


def test_simplex_weights_keep_everything_on_the_first_part_when_nothing_ranks_better() -> None:
    y = np.arange(20.0)
    loo = np.stack([y, y[::-1], np.zeros(20)])  # the first part is perfect; the others cannot add to it
    w, s = simplex_weights(loo, y, step=0.25)
    assert w.tolist() == [1.0, 0.0, 0.0] and s == pytest.approx(1.0)
    same = np.stack([y, y, y])  # all equal: ties keep the first part
    assert simplex_weights(same, y, step=0.5)[0].tolist() == [1.0, 0.0, 0.0]


def test_bagged_weights_are_on_the_simplex_seeded_and_keep_a_part_that_always_wins() -> None:
    rng = np.random.default_rng(2)
    y = rng.normal(size=50)
    loo = np.stack([y + rng.normal(scale=s, size=50) for s in (3.0, 0.05, 3.0)])
    w, s = simplex_weights(loo, y, step=0.1, bags=30, seed=4)
    assert w.sum() == pytest.approx(1.0) and (w >= 0).all()
    assert w[1] > 0.9  # the nearly exact part wins on (almost) every resample
    assert s == pytest.approx(spearmanr(w @ loo, y).statistic, abs=1e-12)
    np.testing.assert_array_equal(w, simplex_weights(loo, y, step=0.1, bags=30, seed=4)[0])
    assert simplex_weights(loo, y, step=0.1, bags=0)[0].tolist() == simplex_weights(loo, y, step=0.1)[0].tolist()
    with pytest.raises(InvalidArgumentError, match="bags"):
        simplex_weights(loo, y, bags=-1)


def test_bagged_weight_is_how_often_a_part_wins_on_a_bootstrap_resample() -> None:
    # with step 1 a blend is one part or the other, so the bagged weight of part 0 is the share of
    # bootstrap resamples on which part 0 ranks the resample at least as well as part 1
    rng = np.random.default_rng(3)
    y = rng.normal(size=50)
    loo = np.stack([y + rng.normal(scale=1.0, size=50), y + rng.normal(scale=1.2, size=50)])
    w, _ = simplex_weights(loo, y, step=1.0, bags=400, seed=0)
    wins = []
    for i in np.random.default_rng(99).integers(0, 50, size=(2000, 50)):
        a, b = (spearmanr(p[i], y[i]).statistic for p in loo)
        wins.append(a >= b - 1e-9)
    assert 0.1 < np.mean(wins) < 0.9  # a close call: the sample alone would give all or nothing
    assert w[0] == pytest.approx(np.mean(wins), abs=0.07)
    assert simplex_weights(loo, y, step=1.0)[0].tolist() in ([1.0, 0.0], [0.0, 1.0])


def test_gp_leave_one_out_equals_refitting_without_each_sample() -> None:
    from sklearn.gaussian_process import GaussianProcessRegressor

    rng = np.random.default_rng(1)
    x = rng.normal(size=(25, 6))
    y = np.sin(x[:, 0]) + 0.5 * x[:, 1] + rng.normal(scale=0.1, size=25)
    gp = EmbeddingGP().fit(x, y)
    xs, yn = (x - gp.loc) / gp.scale, (y - gp.y_loc) / gp.y_scale
    from napbench.zoo.gennape.blend import _kernel_template

    kernel = _kernel_template().clone_with_theta(gp.theta)
    for i in (0, 7, 24):
        keep = np.arange(25) != i
        ref = GaussianProcessRegressor(kernel, optimizer=None).fit(xs[keep], yn[keep]).predict(xs[i : i + 1])[0]
        assert gp.loo[i] == pytest.approx(ref * gp.y_scale + gp.y_loc, abs=1e-6)


def test_gp_learns_a_smooth_function_and_its_state_round_trips() -> None:
    rng = np.random.default_rng(2)
    x = rng.normal(size=(140, 8))
    y = np.sin(x[:, 0]) + x[:, 1] ** 2 / 2 + 0.05 * rng.normal(size=140)
    gp = EmbeddingGP().fit(x[:60], y[:60], seed=0)
    p = gp.predict(x[60:])
    assert spearmanr(p, y[60:]).statistic > 0.8
    assert spearmanr(gp.loo, y[:60]).statistic > 0.7  # out of sample on the training points too
    back = EmbeddingGP.from_state(gp.state())
    np.testing.assert_array_equal(back.predict(x[60:]), p)
    with pytest.raises(InvalidArgumentError, match="expected \\(n, 8\\)"):
        gp.predict(x[:3, :5])
    with pytest.raises(InvalidArgumentError, match="not fitted"):
        EmbeddingGP().predict(x)


def test_wl_ridge_leave_one_out_equals_refitting_without_each_sample(nb201) -> None:
    from napbench.zoo.wl import _matrix, wl_labels

    ds, y = nb201
    g = ds.subset(list(range(30)))
    z = (y[:30] - y[:30].mean()) / y[:30].std()
    m = WLRidge(iterations=2).fit(g, z)
    assert np.isfinite(m.alpha) and m.loo.shape == (30,)
    graph, label = wl_labels(g, 2)
    x = _matrix(graph, label, np.unique(label), 30)
    k = (x @ x.T).toarray()
    r0 = z - z.mean()  # the intercept is the mean of all 30 samples
    for i in (0, 11, 29):
        keep = np.arange(30) != i
        dual = np.linalg.solve(k[np.ix_(keep, keep)] + m.alpha * np.eye(29), r0[keep])
        assert m.loo[i] == pytest.approx(z.mean() + k[i, keep] @ dual, abs=1e-9)
