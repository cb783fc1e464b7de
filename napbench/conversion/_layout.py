"""Tensor layouts: how a framework tensor's axes relate to its canonical shape (shared by frontends).

A framework tensor (batch axis first, batch 1) carries a permutation ``perm`` relating its axes
to the channel-first axes of its canonical shape, ``tensor_shape[i] == cf_shape[perm[i]]``: the
identity for NCHW, ``(0, 2, 3, 1)`` for NHWC -- and for a token tensor ``(B, N, C)``, whose
canonical shape is ``(C, N)``. ``None`` means unknown (after a reshape that is neither), and
such tensors are read as tokens: ``(last axis, all other elements)``. Transposes compose
permutations exactly; reshapes re-derive the layout by comparing shapes (:func:`guess_perm`).
The torch and ONNX frontends follow these same rules, so both give one graph.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from napbench.conversion.builder import canon_shape, tokens

Shape = tuple[int, ...]
Perm = tuple[int, ...]


def identity(r: int) -> Perm:
    """The channel-first layout of a rank-``r`` tensor."""
    return tuple(range(r))


def channels_last(r: int) -> Perm:
    """The channel-last layout (NHWC, or ``(B, N, C)`` tokens) of a rank-``r`` tensor."""
    return (0, *range(2, r), 1) if r >= 3 else tuple(range(r))


def cf(shape: Sequence[int], perm: Perm) -> Shape:
    """Channel-first shape (with batch) of a tensor of ``shape`` in layout ``perm``."""
    out = [0] * len(shape)
    for i, p in enumerate(perm):
        out[p] = int(shape[i])
    return tuple(out)


def graph_shape(shape: Sequence[int], perm: Perm | None) -> Shape:
    """Canonical shape (channel-first, no batch) of a tensor in layout ``perm`` (None: as written)."""
    s = cf(shape, perm) if perm is not None and len(perm) == len(shape) else tuple(int(d) for d in shape)
    return canon_shape(s[1:]) if len(s) > 1 else s


def token_shape(shape: Sequence[int]) -> Shape:
    """Token shape of a tensor (batch 1) of unknown layout: ``(last axis, every other element)``."""
    if not shape:
        return (1,)
    return tokens(int(shape[-1]), math.prod(int(d) for d in shape))


def layout_shape(shape: Sequence[int], perm: Perm | None) -> Shape:
    """Canonical shape through ``perm`` when it is known for this rank, else the token shape."""
    if perm is not None and len(perm) == len(shape):
        return graph_shape(shape, perm)
    return token_shape(shape)


def compose(perm: Perm | None, dims: Sequence[int]) -> Perm | None:
    """Layout after permuting a tensor of layout ``perm`` by ``dims`` (``x.permute(dims)``)."""
    if perm is None or len(perm) != len(dims):
        return None
    return tuple(perm[d] for d in dims)


def guess_perm(target: Shape, shape: Sequence[int], *, channels_last_first: bool = False) -> Perm | None:
    """The layout under which a tensor of ``shape`` has canonical shape ``target`` (identity or
    channels-last, in that order unless ``channels_last_first``), or None."""
    r = len(shape)
    cands = [channels_last(r), identity(r)] if channels_last_first else [identity(r), channels_last(r)]
    for p in cands:
        if graph_shape(shape, p) == target:
            return p
    return None


def einsum_parts(eq: str, shapes: Sequence[Sequence[int]]) -> tuple[int, int] | None:
    """(contracted length, output length) of a two-operand einsum that contracts an index, else None."""
    eq = eq.replace(" ", "")
    if "->" not in eq or "..." in eq:
        return None
    lhs, out = eq.split("->")
    ins = lhs.split(",")
    if len(ins) != 2 or any(len(t) != len(s) for t, s in zip(ins, shapes)):
        return None
    size = {c: int(d) for t, s in zip(ins, shapes) for c, d in zip(t, s)}
    contracted = [c for c in size if c in ins[0] and c in ins[1] and c not in out]
    if not contracted:  # an elementwise or outer product, not a matrix product
        return None
    return math.prod(size[c] for c in contracted), math.prod(size[c] for c in out)
