"""The Fourier zero-shot predictor: spectrum fitting, unitisation, soft-rank loss, checkpoints."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy.stats import rankdata, spearmanr

from napbench.conversion import GraphBuilder, to_torch
from napbench.zoo import get_predictor, list_predictors, load
from napbench.zoo.fourier import FourierPredictor, _Recorder, fit_spectrum, soft_rank, spearman_loss, symlog


def _spec(kernel: list[float]) -> torch.Tensor:
    return torch.fft.fft(torch.tensor(kernel, dtype=torch.float64))


def test_trimmed_spectrum_equals_a_hand_computed_dft() -> None:
    # fft([1, 2, 3, 4]) = [10, -2+2j, -2, -2-2j]; keeping the two central frequencies (DC and -1)
    # gives [10, -2-2j]; its inverse DFT is [4-1j, 6+1j]; real part times 2/4 -> [2, 3]
    k = fit_spectrum(_spec([1, 2, 3, 4]), (2,))
    assert torch.allclose(k, torch.tensor([2.0, 3.0], dtype=torch.float64))


def test_zero_padded_spectrum_interpolates() -> None:
    # fft([1, 2]) = [3, -1]; zero-padded to 4 frequencies [3, 0, 0, -1] -> ifft real [0.5, 0.75, 1, 0.75] * 4/2
    k = fit_spectrum(_spec([1, 2]), (4,))
    assert torch.allclose(k, torch.tensor([1.0, 1.5, 2.0, 1.5], dtype=torch.float64))


def test_same_shape_is_the_inverse_dft_and_any_conv_shape_works() -> None:
    g = torch.Generator().manual_seed(0)
    w = torch.randn(4, 3, 5, 5, generator=g, dtype=torch.float64)
    assert torch.allclose(fit_spectrum(torch.fft.fftn(w), (4, 3, 5, 5)), w)
    p = FourierPredictor(base_channels=8, base_kernel=5)
    for shape in [(64, 32, 3, 3), (16, 1, 5, 5), (10, 64), (8, 8, 7), (4, 4, 3, 3, 3), (8, 8, 5, 5)]:
        k = p.kernel(shape)
        assert k.shape == shape and torch.isfinite(k).all()
    base = p.kernel((8, 8, 5, 5))
    assert torch.allclose(base, torch.fft.ifftn(torch.view_as_complex(p.spectrum)).real, atol=1e-6)


def _chain(depth: int, c: int = 4) -> object:
    b = GraphBuilder((c, 6, 6))
    x = b.input
    for _ in range(depth):
        x = b.relu(b.conv(x, c, 3, padding=1))
    return b.build([b.global_pool(x)])


def test_variance_unitisation_keeps_a_deep_chain_at_unit_variance() -> None:
    g = _chain(60)
    net = to_torch(g, seed=0)
    with torch.no_grad():
        for m in net.modules():
            if isinstance(m, torch.nn.Conv2d):
                m.weight.mul_(20.0)  # each layer multiplies the scale: 60 layers overflow float32
    x = torch.randn(4, *g.input_shape)
    with torch.no_grad():
        plain = net(x)
    assert not torch.isfinite(plain).all()
    rec = _Recorder()
    stds: list[float] = []

    def post(i: int, node: object, y: torch.Tensor) -> torch.Tensor:
        y = rec(i, node, y)
        if node.op == "conv":  # type: ignore[attr-defined]
            stds.append(float(y.std()))
        return y

    net.post = post
    with torch.no_grad():
        out = net(x)
    assert torch.isfinite(out).all()
    assert len(stds) == 60 and np.allclose(stds, 1.0, atol=1e-4)
    assert len(rec.weighted) == 60 and float(torch.stack(rec.weighted).max()) > 1.0  # the removed scale is recorded


def test_soft_rank_matches_ordinal_ranks_in_the_hard_limit() -> None:
    x = torch.tensor([3.0, 1.0, 2.0, 2.0, 10.0])
    assert torch.allclose(soft_rank(x, 1e-4), torch.tensor(rankdata(x.numpy()), dtype=torch.float32))
    rng = np.random.default_rng(0)
    for _ in range(5):
        a, b = rng.normal(size=20), rng.normal(size=20)
        loss = spearman_loss(torch.tensor(a), torch.tensor(b), temperature=1e-6)
        assert float(loss) == pytest.approx(1.0 - spearmanr(a, b)[0], abs=1e-9)
    # differentiable at a finite temperature
    p = torch.tensor(rng.normal(size=10), requires_grad=True)
    spearman_loss(p, torch.tensor(rng.normal(size=10)), temperature=0.5).backward()
    assert p.grad is not None and p.grad.abs().sum() > 0
    assert torch.allclose(symlog(torch.tensor([-(np.e - 1), 0.0, np.e - 1])), torch.tensor([-1.0, 0.0, 1.0]))


def test_registered_fits_and_checkpoint_round_trip_gives_identical_scores(tmp_path) -> None:
    from napbench.datasets import get_family

    assert "fourier" in list_predictors()
    fam = get_family("nb201")
    archs = fam.sample(12, seed=0)
    graphs = [fam.build_cg(a) for a in archs]
    y = np.array([g.flops for g in graphs], dtype=float)  # a learnable stand-in label
    p = get_predictor("fourier", base_channels=8, hidden=16, n_inputs=4, input_size=8, batch_graphs=6)
    p.fit(graphs[:8], y[:8], epochs=1, progress=False)
    s = p.predict(graphs)
    assert s.shape == (12,) and np.isfinite(s).all()
    p.save_pretrained(tmp_path / "ck")
    q = load(tmp_path / "ck")
    assert isinstance(q, FourierPredictor)
    assert np.array_equal(q.predict(graphs), s)
    assert q.training_info["fit"]["n"] == 8


def test_graphs_propagated_together_give_the_features_of_each_alone() -> None:
    from napbench.datasets import get_family

    fam = get_family("nb201")
    graphs = [fam.build_cg(a) for a in fam.sample(3, seed=1)] + [_chain(3), _chain(5, c=6)]
    p = FourierPredictor(base_channels=8, hidden=16, n_inputs=4, input_size=8, chunk_graphs=3)
    with torch.no_grad():
        alone = torch.stack([p.features(g) for g in graphs])
        together = p._feature_matrix(graphs)
    assert together.shape == (len(graphs), p.n_features)
    assert torch.allclose(together, alone, atol=1e-4)
    assert not torch.allclose(together[0], together[1])  # different graphs, different features


def test_training_batches_hold_one_family_each() -> None:
    from napbench.zoo.fourier import family_batches

    fams = ["a"] * 70 + ["b"] * 9 + ["c"] * 2
    batches = family_batches(fams, 32, np.random.default_rng(0))
    assert all(len({fams[i] for i in b}) == 1 for b in batches)
    rows = np.concatenate(batches)
    assert sorted(rows.tolist()) == list(range(79))  # family c (2 rows) cannot be ranked: left out
    assert sorted(len(b) for b in batches) == [6, 9, 32, 32]


def test_the_mlp_weights_follow_the_seed_not_the_global_rng() -> None:
    from napbench import zoo

    torch.manual_seed(1)
    a = zoo.get_predictor("fourier", seed=3)
    torch.manual_seed(2)
    b = zoo.get_predictor("fourier", seed=3)
    c = zoo.get_predictor("fourier", seed=4)
    for (name, pa), pb, pc in zip(a.mlp.named_parameters(), b.mlp.parameters(), c.mlp.parameters()):
        assert torch.equal(pa, pb), name
        assert not torch.equal(pa, pc), name
