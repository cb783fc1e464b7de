"""NAS-Bench-201 (NATS-Bench topology space): 15,625 cells, all labelled.

Spec: ``families/nb201.md``. An architecture is the official arch string
``|op~0|+|op~0|op~1|+|op~0|op~1|op~2|``; group k lists the edges into node k, each token
``opname~src``. Structured form (:meth:`NB201.decode`): a tuple of 6 op names in the arch
string's edge order :data:`EDGES` = (1←0, 2←0, 2←1, 3←0, 3←1, 3←2).

Module helpers convert to / from the two integer encodings found in the shared data
(spec §1.2): the 6-digit ``op_key`` of ``nb201_merged.csv`` and NASLib's 6-int tuple.
"""

from __future__ import annotations

import random
from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING, Any, ClassVar

from napbench.datasets._mirror import mirror_file, require_columns
from napbench.datasets._registry import Family, register_family
from napbench.errors import MirrorError, UnknownNameError

if TYPE_CHECKING:  # pragma: no cover
    import polars as pl
    import torch.nn as nn

    from napbench.conversion.graph import CompGraph

#: candidate ops, in the order the ``op_key`` digits use (none 0 ... avg_pool_3x3 4)
OPS: tuple[str, ...] = ("none", "skip_connect", "nor_conv_1x1", "nor_conv_3x3", "avg_pool_3x3")
#: (dst, src) of the 6 cell edges, in arch-string / op_key order
EDGES: tuple[tuple[int, int], ...] = ((1, 0), (2, 0), (2, 1), (3, 0), (3, 1), (3, 2))
#: NASLib's op codes (skip_connect 0, none 1, nor_conv_3x3 2, nor_conv_1x1 3, avg_pool_3x3 4)
NASLIB_OPS: tuple[str, ...] = ("skip_connect", "none", "nor_conv_3x3", "nor_conv_1x1", "avg_pool_3x3")
#: NASLib's edge order (1←0, 2←0, 3←0, 2←1, 3←1, 3←2) as positions into :data:`EDGES`
_NASLIB_EDGE_POS: tuple[int, ...] = (0, 1, 3, 2, 4, 5)

#: dataset variants of the network: (input shape, classes)
DATASETS: dict[str, tuple[tuple[int, int, int], int]] = {
    "cifar10-valid": ((3, 32, 32), 10),
    "cifar10": ((3, 32, 32), 10),
    "cifar100": ((3, 32, 32), 100),
    "ImageNet16-120": ((3, 16, 16), 120),
}

_LABEL_FILE = "nasbench201/nb201_merged.csv"
_LABEL_SHA256 = "0ba534ee30fb8192d547a88e653be218805cd9852dca2d9490c0397b2287d5cd"
_MEAN_COLUMNS = (
    "c10valid_validacc_200ep_mean",
    "c100_validacc_200ep_mean",
    "c100_valtestacc_200ep_mean",
    "in16_validacc_200ep_mean",
    "in16_valtestacc_200ep_mean",
)
_SEED_COLUMNS = (
    "c10valid_validacc_200ep_seeds",
    "c100_validacc_200ep_seeds",
    "c100_valtestacc_200ep_seeds",
    "in16_validacc_200ep_seeds",
    "in16_valtestacc_200ep_seeds",
)
_DERIVED_COLUMNS = ("c100_testacc_200ep_derived_mean", "in16_testacc_200ep_derived_mean")
_PARAMS_COLUMNS = ("c10valid_params_mb", "c100_params_mb", "in16_params_mb")
#: HW-NAS-Bench (Li et al. 2021) cost tables per dataset variant, and their metrics (ms / mJ)
HW_FILES: dict[str, tuple[str, str]] = {
    "cifar10-valid": ("hw_nas_bench/hw_cifar10.csv", "71e56e00ce03525aaccdb5bac4f9856b8733ed12741ff09e12784d30fa21a602"),
    "cifar10": ("hw_nas_bench/hw_cifar10.csv", "71e56e00ce03525aaccdb5bac4f9856b8733ed12741ff09e12784d30fa21a602"),
    "cifar100": ("hw_nas_bench/hw_cifar100.csv", "43e66dff2c02fd36f655c989615c95ae366b97a60f289410c802c5b8b87a1cb8"),
    "ImageNet16-120": ("hw_nas_bench/hw_ImageNet16-120.csv", "c0d10fa8da52bcf8880496c22fa126cce39d8acf3c9224670170e31ef0294a0c"),
}
HW_METRICS: tuple[str, ...] = (
    "edgegpu_latency", "edgegpu_energy", "raspi4_latency", "edgetpu_latency", "pixel3_latency",
    "eyeriss_latency", "eyeriss_energy", "eyeriss_arithmetic_intensity", "fpga_latency", "fpga_energy",
)
_12EP_COLUMNS = (
    "c10_testacc_12ep",
    "c10valid_validacc_12ep",
    "c100_testacc_12ep",
    "c100_validacc_12ep",
    "in16_testacc_12ep",
    "in16_validacc_12ep",
)


# -- encodings ----------------------------------------------------------------------------
def parse_arch(arch: str) -> tuple[str, ...]:
    """Parse an NB-201 arch string into its 6 op names in :data:`EDGES` order.

    Raises ``ValueError`` naming the problem when ``arch`` is malformed.
    """
    expected = "expected an NB-201 arch string like '|op~0|+|op~0|op~1|+|op~0|op~1|op~2|'"
    if not isinstance(arch, str):
        raise ValueError(f"{expected}, got {type(arch).__name__}")
    groups = arch.split("+")
    if len(groups) != 3:
        raise ValueError(f"{expected}; got {len(groups)} '+'-separated group(s) in {arch!r}")
    ops: list[str] = []
    for dst, group in enumerate(groups, start=1):
        if len(group) < 2 or group[0] != "|" or group[-1] != "|":
            raise ValueError(f"{expected}; group {dst} of {arch!r} must start and end with '|'")
        tokens = group[1:-1].split("|")
        if len(tokens) != dst:
            raise ValueError(f"{expected}; group {dst} of {arch!r} has {len(tokens)} token(s), expected {dst}")
        for src, token in enumerate(tokens):
            op, sep, src_text = token.partition("~")
            if not sep or src_text != str(src):
                raise ValueError(f"{expected}; token {token!r} in {arch!r} should read '<op>~{src}'")
            if op not in OPS:
                raise ValueError(f"unknown NB-201 op {op!r} in {arch!r}; expected one of {list(OPS)}")
            ops.append(op)
    return tuple(ops)


def format_arch(ops: Sequence[str]) -> str:
    """Inverse of :func:`parse_arch`: 6 op names in :data:`EDGES` order -> arch string."""
    ops = tuple(ops)
    if len(ops) != len(EDGES) or any(op not in OPS for op in ops):
        raise ValueError(f"expected 6 NB-201 op names from {list(OPS)}, got {ops!r}")
    groups = []
    start = 0
    for dst in (1, 2, 3):
        groups.append("|" + "|".join(f"{ops[start + src]}~{src}" for src in range(dst)) + "|")
        start += dst
    return "+".join(groups)


def arch_to_op_key(arch: str) -> str:
    """Arch string -> 6-digit ``op_key`` of ``nb201_merged.csv`` (none 0 ... avg_pool_3x3 4)."""
    return "".join(str(OPS.index(op)) for op in parse_arch(arch))


def op_key_to_arch(op_key: str) -> str:
    """6-digit ``op_key`` (digits 0-4, arch-string edge order) -> arch string."""
    if not isinstance(op_key, str) or len(op_key) != 6 or any(c not in "01234" for c in op_key):
        raise ValueError(f"expected a 6-digit NB-201 op_key with digits 0-4, got {op_key!r}")
    return format_arch([OPS[int(c)] for c in op_key])


def arch_to_naslib(arch: str) -> tuple[int, ...]:
    """Arch string -> NASLib 6-int tuple (NASLib op codes, NASLib edge order)."""
    ops = parse_arch(arch)
    return tuple(NASLIB_OPS.index(ops[pos]) for pos in _NASLIB_EDGE_POS)


def naslib_to_arch(codes: Sequence[int]) -> str:
    """NASLib 6-int tuple (edges 1←0, 2←0, 3←0, 2←1, 3←1, 3←2) -> arch string."""
    codes = tuple(codes)
    if len(codes) != 6 or any(not isinstance(c, int) or not 0 <= c < len(NASLIB_OPS) for c in codes):
        raise ValueError(f"expected a NASLib NB-201 tuple of 6 ints in 0..4, got {codes!r}")
    ops = [""] * 6
    for code, pos in zip(codes, _NASLIB_EDGE_POS, strict=True):
        ops[pos] = NASLIB_OPS[code]
    return format_arch(ops)


@register_family
class NB201(Family):
    """NAS-Bench-201 / NATS-Bench-tss: 15,625 cells on 6 edges x 5 ops, all labelled.

    ``enumerate()`` yields the space in lexicographic ``op_key`` order (``000000`` ...
    ``444444``), which is data-independent; the official NB-201 index of each arch is the
    ``index`` column of :meth:`load_labels`.

    ``dataset`` picks the network variant: ``"cifar10-valid"`` (default) and ``"cifar10"``
    (32x32, 10 classes), ``"cifar100"`` (32x32, 100), ``"ImageNet16-120"`` (16x16, 120).

    Label columns (from ``nasbench201/nb201_merged.csv``; accuracies in %, 200-epoch
    training unless the name says ``12ep``):

    * ``index`` (int): NB-201 / NATS-tss index 0..15624; ``n_seeds_200ep`` (int): 2 or 3.
    * ``c10valid_validacc_200ep_mean``: CIFAR-10 trained on the 25k train half, accuracy on
      the 25k valid half (the default label; no CIFAR-10 test accuracy at 200 epochs here).
    * ``c100_validacc_200ep_mean``, ``in16_validacc_200ep_mean``: x-valid accuracy;
      ``c100_valtestacc_200ep_mean``, ``in16_valtestacc_200ep_mean``: accuracy on
      x-valid ∪ x-test.
    * ``*_seeds`` (list[float]): the per-seed values behind each of those five means.
    * ``c100_testacc_200ep_derived_mean``, ``in16_testacc_200ep_derived_mean``: x-test
      accuracy derived per seed as 2·valtest − valid, then averaged.
    * ``c10valid_params_mb``, ``c100_params_mb``, ``in16_params_mb``: parameters / 1e6.
    * ``c10_testacc_12ep``, ``c10valid_validacc_12ep``, ``c100_testacc_12ep``,
      ``c100_validacc_12ep``, ``in16_testacc_12ep``, ``in16_validacc_12ep``: 12-epoch runs.
    * ``hw_<metric>`` for each of :data:`HW_METRICS`: HW-NAS-Bench latency (ms) / energy (mJ)
      on edge GPU, Raspberry Pi 4, Edge TPU, Pixel 3, Eyeriss and FPGA for this dataset
      variant (:func:`load_hw_nas_bench`); ``hw_edgetpu_latency`` is null where the table has
      its -1 "missing" sentinel.
    """

    name: ClassVar[str] = "nb201"
    description: ClassVar[str] = "NAS-Bench-201 cell space (15,625 cells, CIFAR-10/100, ImageNet16-120)"
    input_shape: ClassVar[tuple[int, int, int]] = (3, 32, 32)
    num_classes: ClassVar[int] = 10
    space_size: ClassVar[int | None] = len(OPS) ** len(EDGES)
    default_size: ClassVar[int] = 15_625
    labelled: ClassVar[bool] = True
    default_label: ClassVar[str | None] = "c10valid_validacc_200ep_mean"

    def __init__(self, dataset: str = "cifar10-valid") -> None:
        if dataset not in DATASETS:
            raise UnknownNameError("NB-201 dataset", dataset, list(DATASETS))
        self.dataset = dataset
        # instance attributes shadow the class defaults for the non-default variants
        self.input_shape, self.num_classes = DATASETS[dataset]  # type: ignore[misc]

    # -- search space -------------------------------------------------------------------
    def enumerate(self) -> Iterator[str]:
        """Yield all 15,625 arch strings in lexicographic ``op_key`` order."""
        for i in range(self.space_size or 0):
            yield self._from_int(i)

    def sample_one(self, rng: random.Random) -> str:
        """Draw one of the 15,625 cells uniformly."""
        return self._from_int(rng.randrange(self.space_size or 0))

    @staticmethod
    def _from_int(i: int) -> str:
        digits = []
        for _ in EDGES:
            i, d = divmod(i, len(OPS))
            digits.append(str(d))
        return op_key_to_arch("".join(reversed(digits)))

    # -- encoding -----------------------------------------------------------------------
    def decode(self, arch: str) -> tuple[str, ...]:
        """Arch string -> tuple of 6 op names in :data:`EDGES` order."""
        return parse_arch(arch)

    def encode(self, spec: Sequence[str]) -> str:
        """Tuple of 6 op names in :data:`EDGES` order -> arch string."""
        return format_arch(spec)

    # -- networks -----------------------------------------------------------------------
    def build_torch(self, arch: str) -> nn.Module:
        """The NB-201 TinyNetwork (C = 16, N = 5) for ``arch`` and this family's dataset."""
        from napbench.datasets.families._nasbench_nets import NB201Network

        return NB201Network(parse_arch(arch), self.num_classes)

    def build_cg(self, arch: str) -> CompGraph:
        """Fast path: the canonical CG emitted directly (equal to :meth:`trace_cg`, ~0.7 ms)."""
        from napbench.datasets.families._nb201_fast import nb201_graph

        return nb201_graph(
            parse_arch(arch), num_classes=self.num_classes, input_shape=self.input_shape, meta=self.graph_meta(arch)
        )

    def graph_meta(self, arch: str) -> dict[str, Any]:
        """Family metadata plus the dataset variant."""
        return {**super().graph_meta(arch), "dataset": self.dataset}

    # -- labels -------------------------------------------------------------------------
    def load_labels(self, *, mirror: str | None = None) -> pl.DataFrame:
        """All 15,625 rows of ``nb201_merged.csv`` with the columns listed in the class docstring."""
        import polars as pl

        path = mirror_file(_LABEL_FILE, _LABEL_SHA256, root=mirror)
        df = pl.read_csv(path, schema_overrides={"op_key": pl.String, "arch_str": pl.String})
        needed = [
            "index",
            "arch_str",
            "op_key",
            "n_seeds_200ep",
            *_MEAN_COLUMNS,
            *_SEED_COLUMNS,
            *_DERIVED_COLUMNS,
            *_PARAMS_COLUMNS,
            *_12EP_COLUMNS,
        ]
        require_columns(df.columns, needed, _LABEL_FILE)
        bad = [
            (a, k) for a, k in zip(df["arch_str"].to_list(), df["op_key"].to_list(), strict=True) if op_key_to_arch(k) != a
        ]
        if bad:
            raise MirrorError(
                f"mirror file {_LABEL_FILE!r}: {len(bad)} row(s) whose arch_str and op_key disagree, e.g. {bad[0]}; "
                "expected them to encode the same cell"
            )
        floats = [*_MEAN_COLUMNS, *_DERIVED_COLUMNS, *_PARAMS_COLUMNS, *_12EP_COLUMNS]
        out = df.select(
            pl.col("arch_str").alias("arch"),
            pl.col("index").cast(pl.Int64),
            pl.col("n_seeds_200ep").cast(pl.Int64),
            *(pl.col(c).cast(pl.Float64) for c in floats),
            *(pl.col(c).str.split(";").cast(pl.List(pl.Float64)) for c in _SEED_COLUMNS),
        )
        n_bad = out.filter(pl.col("c10valid_validacc_200ep_seeds").list.len() != pl.col("n_seeds_200ep")).height
        if n_bad or out.select(pl.any_horizontal(pl.all().is_null()).sum()).item():
            raise MirrorError(
                f"mirror file {_LABEL_FILE!r} has missing values or seed lists whose length differs from "
                "n_seeds_200ep; expected complete rows"
            )
        hw = load_hw_nas_bench(self.dataset, mirror=mirror)
        return out.join(hw, on="arch", how="left").sort("index")


def load_hw_nas_bench(dataset: str = "cifar10-valid", *, mirror: str | None = None) -> pl.DataFrame:
    """HW-NAS-Bench costs of all 15,625 cells for one dataset variant: ``arch`` + ``hw_<metric>`` columns.

    Rows are keyed in the table by NASLib tuples (``net``); negative values (the table's -1
    sentinel) become nulls.
    """
    import polars as pl

    if dataset not in HW_FILES:
        raise UnknownNameError("NB-201 dataset", dataset, list(HW_FILES))
    rel, sha = HW_FILES[dataset]
    df = pl.read_csv(mirror_file(rel, sha, root=mirror))
    require_columns(df.columns, ["net", *HW_METRICS], rel)
    archs = [naslib_to_arch(tuple(int(t) for t in net.strip("()").split(","))) for net in df["net"].to_list()]
    out = df.select(
        pl.Series("arch", archs),
        *(pl.when(pl.col(m) < 0).then(None).otherwise(pl.col(m)).cast(pl.Float64).alias(f"hw_{m}") for m in HW_METRICS),
    )
    if out["arch"].n_unique() != out.height:
        raise MirrorError(f"mirror file {rel!r} lists a cell twice; expected one row per NB-201 cell")
    return out
