"""The napbench op vocabulary: the primitive ops a computation graph may contain.

Versioned: any change to the set of ops, their meaning or the canonicalisation rules bumps
``VOCAB_VERSION``; datasets and checkpoints record it and refuse to mix versions. Each
frontend only maps its own ops onto these names.

Shapes (the README's "Shapes" section states the same rules):

* **Feature maps** are channel-first without the batch dimension, ``(C, *spatial)``; a map
  whose spatial extent is all ones is written ``(C,)`` (so a 1x1 map after global pooling and
  a flat vector compare equal across frameworks).
* **Token tensors** (anything a feature op -- ``linear``, ``matmul``, ``softmax``, a norm,
  ``concat`` off the channel axis, ``param`` -- produces in a layout other than a map) are
  feature-first and flattened: ``(F, M)`` where ``F`` is the size of the axis the op acts on
  (the last axis in torch/Keras/ONNX) and ``M`` the number of positions: every other axis,
  *including* groups folded into the batch (heads, windows, patches), multiplied out. A
  ``(B, N, C)`` tensor is ``(C, N)``; attention scores ``(B, h, N, N)`` are ``(N, h*N)``;
  MobileViT's ``(B*P, N, C)`` is ``(C, P*N)``. ``M == 1`` is written ``(F,)``.
* Layout changes (transpose, permute, reshape, view, flatten, roll, window partition, patch
  unfold/fold, split into heads) are **plumbing**: no node. A node's recorded input shapes are
  its sources' canonical output shapes, so a node's multiply-adds depend only on its own
  output size and weight (or ``inner``) -- never on a shape recorded before a reshape.
* A feature op applied to a map along its channel axis keeps the map form:
  ``linear`` on ``(C, H, W)`` gives ``(C_out, H, W)`` (Keras ``Dense`` on NHWC, ConvNeXt's
  pointwise linears after a permute).
* Elementwise ops (activations, ``add``, ``mul``, ``scale``, norms...) keep their input's
  canonical shape; an n-ary one takes its largest input (most elements, then most axes), every
  other input must divide it (broadcasting, e.g. a ``(C,)`` gate over ``(C, H, W)``).

Executing a graph (what each op computes, on canonical shapes with a batch axis in front):
``linear`` multiplies the canonical axis 0 (features) by a ``(C_out, C_in)`` weight, keeping
the other axes (a map stays a map); ``matmul`` of inputs ``a`` (canonical ``(K, B*M)``: rows of
length ``K = inner``) and ``b`` is a batched ``(B, M, K) x (B, K, N)`` product whose output is
``(N, B*M)`` -- attention is ``matmul(q, k)`` (inner = head size; ``k`` is read transposed),
``softmax`` over axis 0 (the keys), ``matmul(p, v)`` (inner = number of keys); the batch count
``B`` (heads x windows) is ``prod(output_shape) / (M * N)``. ``param`` is a stored tensor with
``prod(weight_shape)`` elements reshaped to ``output_shape``. ``reduce_*`` reduce axis 0 to 1.
``layernorm`` normalises axis 0 (per position) with ``weight_shape`` scale/shift; ``groupnorm``
normalises ``groups`` groups of axis 0 over all positions.

Node attributes used by the ops below (see :class:`napbench.conversion.graph.Node`):
``weight_shape``, ``bias``, ``kernel``/``stride``/``padding``/``dilation``/``groups`` (spatial
ops) and ``inner`` (``matmul``: the contracted length ``K``).
"""

from __future__ import annotations

from typing import Final

VOCAB_VERSION: Final[str] = "2.0"

#: op name -> one-line meaning. The order is stable: it defines the one-hot index of each op.
OPS: Final[dict[str, str]] = {
    "input": "the network input",
    "conv": "N-d convolution (groups > 1 for grouped/depthwise); weight (C_out, C_in/groups, *kernel)",
    "conv_transpose": "N-d transposed convolution; weight (C_in, C_out/groups, *kernel)",
    "linear": "fully connected layer on the feature axis; weight (C_out, C_in); output (C_out, *rest) of a map or "
    "(C_out, M) of tokens; MACs = prod(output_shape) * C_in",
    "matmul": "batched product of two activations, (..., M, K) x (..., K, N) -> (..., M, N), heads and windows "
    "batched; inner = K; output canonical (N, batch*M); MACs = prod(output_shape) * inner",
    "bn": "batch normalisation (inference: per-channel scale and shift) on the canonical axis 0; weight (C,) when "
    "it has a scale; bias (a shift) sized like the weight, else C; buffers 2*C (running mean, variance)",
    "layernorm": "layer normalisation over the feature axis (the last framework axes); weight = the normalised "
    "shape (e.g. (C,)) when affine; bias sized like the weight; output shape = input shape",
    "groupnorm": "group normalisation over channels (axis 0) in groups; weight (C,) when affine; shape-preserving",
    "relu": "max(x, 0)",
    "relu6": "min(max(x, 0), 6)",
    "leaky_relu": "leaky ReLU",
    "elu": "exponential linear unit",
    "gelu": "Gaussian error linear unit",
    "silu": "x * sigmoid(x) (swish)",
    "sigmoid": "logistic sigmoid",
    "hardsigmoid": "piecewise-linear sigmoid",
    "hardswish": "x * hardsigmoid(x)",
    "tanh": "hyperbolic tangent",
    "softmax": "softmax over the feature axis (canonical axis 0: channels of a map, the last framework axis of "
    "tokens, the key axis of attention scores); shape-preserving",
    "add": "elementwise sum of two or more tensors (n-ary, commutative)",
    "sub": "elementwise difference",
    "mul": "elementwise product of two or more tensors (commutative), e.g. squeeze-excite gating",
    "div": "elementwise quotient",
    "concat": "concatenation along channels (input order matters)",
    "avgpool": "average pooling",
    "maxpool": "max pooling",
    "global_avgpool": "average over all spatial positions",
    "global_maxpool": "max over all spatial positions",
    "slice": "a contiguous sub-tensor (channel truncation, spatial crop)",
    "pad": "explicit padding that could not be folded into the next conv or pool",
    "upsample": "spatial up-sampling (nearest or bilinear resize)",
    "zero": "multiplication by zero (NAS 'none' edge); keeps the edge in the graph",
    "scale": "multiplication by a non-zero constant",
    "unknown": "an op outside the vocabulary, kept only when the caller opts in",
    # -- added in vocabulary 2.0 (appended: the one-hot index of the ops above is unchanged) --
    "param": "a learned tensor used as an activation (class token, position embedding, layer-scale gamma, "
    "relative-position bias table...): a source node without inputs; weight_shape = the stored parameter's shape "
    "(its element count is its params), output_shape = the canonical shape of the tensor as used",
    "reduce_mean": "mean over the feature axis (canonical axis 0) of a map or of tokens, e.g. a channel mean of "
    "CBAM-style spatial attention; output (1, *rest)",
    "reduce_max": "max over the feature axis (canonical axis 0); output (1, *rest)",
    "reduce_l2": "L2 norm over the feature axis (canonical axis 0), e.g. inside F.normalize; output (1, *rest)",
}

OP_INDEX: Final[dict[str, int]] = {name: i for i, name in enumerate(OPS)}

#: ops whose inputs may be reordered without changing the result (sorted when hashing)
COMMUTATIVE: Final[frozenset[str]] = frozenset({"add", "mul"})
#: ops carrying learnable weights
WEIGHTED: Final[frozenset[str]] = frozenset({"conv", "conv_transpose", "linear", "bn", "layernorm", "groupnorm", "param"})
#: ops that are graph sources besides ``input`` (no inputs)
SOURCES: Final[frozenset[str]] = frozenset({"param"})
#: normalisation ops: a bias (shift) is sized like the weight, else like the canonical axis 0
NORMS: Final[frozenset[str]] = frozenset({"bn", "layernorm", "groupnorm"})
#: ops whose multiply-adds count toward FLOPs (see ``napbench.conversion.graph``)
MAC_OPS: Final[frozenset[str]] = frozenset({"conv", "conv_transpose", "linear", "matmul"})
#: ops with spatial attributes (kernel, stride, padding, dilation)
SPATIAL: Final[frozenset[str]] = frozenset({"conv", "conv_transpose", "avgpool", "maxpool"})


def op_index(op: str) -> int:
    """Index of ``op`` in the vocabulary (for one-hot encodings)."""
    from napbench.errors import UnsupportedOpError

    try:
        return OP_INDEX[op]
    except KeyError:
        raise UnsupportedOpError(op, "napbench") from None
