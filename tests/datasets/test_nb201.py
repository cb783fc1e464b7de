"""NAS-Bench-201 family: encodings, space, exact network, labels from the mirror."""

from __future__ import annotations

import random
from collections import Counter

import pytest
import torch

from napbench.datasets import get_family
from napbench.datasets.families.nb201 import (
    NB201,
    arch_to_naslib,
    arch_to_op_key,
    naslib_to_arch,
    op_key_to_arch,
)
from napbench.errors import UnknownNameError

RESNET = "|nor_conv_3x3~0|+|none~0|nor_conv_3x3~1|+|skip_connect~0|none~1|skip_connect~2|"
ALL_CONV3 = "|nor_conv_3x3~0|+|nor_conv_3x3~0|nor_conv_3x3~1|+|nor_conv_3x3~0|nor_conv_3x3~1|nor_conv_3x3~2|"
INDEX0 = "|avg_pool_3x3~0|+|nor_conv_1x1~0|skip_connect~1|+|nor_conv_1x1~0|skip_connect~1|skip_connect~2|"
INDEX1 = "|nor_conv_3x3~0|+|nor_conv_3x3~0|avg_pool_3x3~1|+|skip_connect~0|nor_conv_3x3~1|skip_connect~2|"


def n_params(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def meta_params(fam: NB201, arch: str) -> int:
    with torch.device("meta"):
        return n_params(fam.build_torch(arch))


@pytest.fixture(scope="module")
def fam() -> NB201:
    return get_family("nb201")  # type: ignore[return-value]


@pytest.fixture(scope="module")
def labels(fam: NB201, mirror: str):
    return fam.load_labels(mirror=mirror)


# -- encodings ----------------------------------------------------------------------------
def test_round_trip_on_samples(fam: NB201) -> None:
    for arch in fam.sample(200, seed=1):
        ops = fam.decode(arch)
        assert len(ops) == 6
        assert fam.encode(ops) == arch
        assert op_key_to_arch(arch_to_op_key(arch)) == arch
        assert naslib_to_arch(arch_to_naslib(arch)) == arch


def test_integer_encodings_match_spec_examples() -> None:
    assert arch_to_op_key(INDEX1) == "334131"
    assert op_key_to_arch("334131") == INDEX1
    naslib = "|avg_pool_3x3~0|+|skip_connect~0|none~1|+|nor_conv_1x1~0|avg_pool_3x3~1|nor_conv_1x1~2|"
    assert naslib_to_arch((4, 0, 3, 1, 4, 3)) == naslib
    assert arch_to_naslib(naslib) == (4, 0, 3, 1, 4, 3)


@pytest.mark.parametrize(
    "bad",
    [
        "",
        "|nor_conv_3x3~0|+|none~0|nor_conv_3x3~1|",  # two groups
        "|nor_conv_3x3~0|+|none~0|+|skip_connect~0|none~1|skip_connect~2|",  # short group
        "|nor_conv_3x3~1|+|none~0|nor_conv_3x3~1|+|skip_connect~0|none~1|skip_connect~2|",  # wrong src
        "|conv_5x5~0|+|none~0|nor_conv_3x3~1|+|skip_connect~0|none~1|skip_connect~2|",  # unknown op
        "nor_conv_3x3~0|+|none~0|nor_conv_3x3~1|+|skip_connect~0|none~1|skip_connect~2|",  # missing '|'
        RESNET.replace("~", "-"),
    ],
)
def test_decode_rejects_malformed(fam: NB201, bad: str) -> None:
    with pytest.raises(ValueError, match="expected"):
        fam.decode(bad)


def test_other_encodings_reject_malformed(fam: NB201) -> None:
    for bad in ("33413", "334135", 334131):
        with pytest.raises(ValueError, match="expected"):
            op_key_to_arch(bad)  # type: ignore[arg-type]
    for bad_tuple in ((4, 0, 3, 1, 4), (4, 0, 3, 1, 4, 5)):
        with pytest.raises(ValueError, match="expected"):
            naslib_to_arch(bad_tuple)
    with pytest.raises(ValueError, match="expected"):
        fam.encode(("none",) * 5)


# -- space --------------------------------------------------------------------------------
def test_enumerate_is_the_whole_space(fam: NB201) -> None:
    archs = list(fam.enumerate())
    assert len(archs) == fam.space_size == 15_625
    assert len(set(archs)) == 15_625
    assert arch_to_op_key(archs[0]) == "000000" and arch_to_op_key(archs[-1]) == "444444"
    assert fam.default_archs() == archs


def test_sampling_is_seeded_and_valid(fam: NB201) -> None:
    a = fam.sample(50, seed=3)
    assert a == fam.sample(50, seed=3)
    assert len(set(a)) == 50
    rng = random.Random(0)
    for _ in range(20):
        fam.decode(fam.sample_one(rng))


def test_dataset_variants() -> None:
    assert (NB201().num_classes, NB201().input_shape) == (10, (3, 32, 32))
    assert NB201("cifar100").num_classes == 100
    c16 = NB201("ImageNet16-120")
    assert (c16.num_classes, c16.arch_input_shape(RESNET)) == (120, (3, 16, 16))
    assert NB201.num_classes == 10  # the class default is untouched
    with pytest.raises(UnknownNameError, match="cifar100"):
        NB201("cifar1000")


# -- network ------------------------------------------------------------------------------
@pytest.mark.parametrize("dataset", ["cifar10-valid", "cifar100", "ImageNet16-120"])
def test_forward_shape(dataset: str) -> None:
    fam = NB201(dataset)
    torch.manual_seed(0)
    model = fam.build_torch(INDEX1)
    out = model(torch.randn(2, *fam.arch_input_shape(INDEX1)))
    assert out.shape == (2, fam.num_classes)


def test_builds_on_meta_device(fam: NB201) -> None:
    with torch.device("meta"):
        model = fam.build_torch(RESNET)
        out = model(torch.empty(2, *fam.input_shape))
    assert out.shape == (2, 10) and out.device.type == "meta"


def test_none_edges_contribute_zero(fam: NB201) -> None:
    """With every edge into node 3 = none the network output ignores the input."""
    arch = "|nor_conv_3x3~0|+|nor_conv_3x3~0|nor_conv_3x3~1|+|none~0|none~1|none~2|"
    model = fam.build_torch(arch).eval()
    with torch.no_grad():
        a, b = model(torch.randn(2, 3, 32, 32)), model(torch.randn(2, 3, 32, 32))
    assert torch.allclose(a, b)


@pytest.mark.parametrize(
    ("arch", "expected"),
    [
        (RESNET, (559_386, 565_236, 566_536)),
        (ALL_CONV3, (1_531_546, 1_537_396, 1_538_696)),
        (INDEX0, (129_306, 135_156, 136_456)),
        (INDEX1, (802_426, None, None)),
    ],
)
def test_parameter_counts_match_spec(arch: str, expected: tuple[int | None, ...]) -> None:
    for dataset, want in zip(("cifar10-valid", "cifar100", "ImageNet16-120"), expected, strict=True):
        if want is not None:
            assert meta_params(NB201(dataset), arch) == want, dataset


def test_trace_cg(fam: NB201) -> None:
    from napbench.conversion import from_torch  # noqa: F401  (the converter must import)

    for arch in fam.sample(3, seed=7):
        ops = fam.decode(arch)
        cg = fam.trace_cg(arch)
        counts = Counter(node.op for node in cg.nodes)
        # stem 1 + 3 per reduction block, then one conv per conv edge of each of the 15 cells
        assert counts["conv"] == 7 + 15 * sum(op.startswith("nor_conv") for op in ops)
        assert counts["linear"] == 1 and counts["input"] == 1
        assert 25 <= len(cg.nodes) <= 25 + 15 * 30
        assert cg.meta["arch"] == arch


# -- labels -------------------------------------------------------------------------------
def test_labels_cover_the_space(fam: NB201, labels) -> None:
    assert labels.height == 15_625
    assert labels["index"].to_list() == list(range(15_625))
    assert set(labels["arch"].to_list()) == set(fam.enumerate())
    assert labels["arch"][1] == INDEX1
    assert fam.default_label in labels.columns
    for col in labels.columns:
        if col != "hw_edgetpu_latency":  # HW-NAS-Bench's -1 sentinels are nulls
            assert labels[col].null_count() == 0, col


def test_label_facts_from_provenance(labels) -> None:
    import polars as pl

    assert round(labels["c10valid_validacc_200ep_mean"].max(), 2) == 91.61
    assert round(labels["c100_testacc_200ep_derived_mean"].max(), 2) == 73.51
    assert round(labels["in16_testacc_200ep_derived_mean"].max(), 2) == 47.31

    row = labels.filter(pl.col("index") == 11472).row(0, named=True)
    assert row["arch"] == RESNET
    assert round(row["c10valid_validacc_200ep_mean"], 2) == 90.86
    assert row["c100_validacc_200ep_seeds"] == pytest.approx([70.58, 70.42])
    assert row["in16_validacc_200ep_seeds"] == pytest.approx([43.666667, 44.533333])
    assert row["c100_testacc_200ep_derived_mean"] == pytest.approx((70.92 + 70.86) / 2)
    assert row["in16_testacc_200ep_derived_mean"] == pytest.approx((44.83 + 43.63) / 2, abs=0.01)
    assert row["n_seeds_200ep"] == len(row["c10valid_validacc_200ep_seeds"]) == 2

    dead = labels.filter(pl.col("arch").str.ends_with("|+|none~0|none~1|none~2|"))
    assert dead.height == 125
    assert dead["c10valid_validacc_200ep_mean"].round(3).unique().to_list() == [9.712]


def test_seed_lists_average_to_means(labels) -> None:
    import polars as pl

    for metric in ("c10valid_validacc", "c100_validacc", "c100_valtestacc", "in16_validacc", "in16_valtestacc"):
        diff = labels.select(
            (pl.col(f"{metric}_200ep_seeds").list.mean() - pl.col(f"{metric}_200ep_mean")).abs().max()
        ).item()
        assert diff < 1e-4, metric


def test_params_match_labels_on_a_sample(fam: NB201, labels) -> None:
    rows = labels.sample(30, seed=0).iter_rows(named=True)
    for row in rows:
        assert meta_params(fam, row["arch"]) == round(row["c10valid_params_mb"] * 1e6), row["arch"]
