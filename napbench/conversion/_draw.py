"""Pictures of computation graphs (Graphviz DOT rendered to PNG/SVG)."""

from __future__ import annotations

import os
import shutil
import struct
import subprocess
import zlib
from pathlib import Path
from typing import TYPE_CHECKING

from napbench._io import atomic_file
from napbench.errors import ConversionError

if TYPE_CHECKING:  # pragma: no cover
    from napbench.conversion.graph import CompGraph

_COLORS = {
    "conv": "#8ecae6", "linear": "#219ebc", "bn": "#ffb703", "relu": "#fb8500", "add": "#90be6d",
    "concat": "#43aa8b", "mul": "#f9c74f", "avgpool": "#cdb4db", "maxpool": "#cdb4db", "input": "#e9ecef",
    "zero": "#dee2e6", "global_avgpool": "#bde0fe",
}


def to_dot(g: CompGraph) -> str:
    """DOT source with one box per node: op, key attributes and output shape."""
    lines = ["digraph cg {", '  rankdir=TB; node [shape=box, style="rounded,filled", fontname="Helvetica", fontsize=10];']
    for i, n in enumerate(g.nodes):
        attrs = ""
        if n.kernel:
            attrs = f" {'x'.join(map(str, n.kernel))}"
            if any(s != 1 for s in n.stride):
                attrs += f" /{n.stride[0]}"
            if n.groups > 1:
                attrs += f" g{n.groups}"
        label = f"{n.op}{attrs}\\n{'x'.join(map(str, n.output_shape))}"
        color = _COLORS.get(n.op, "#f1faee")
        lines.append(f'  n{i} [label="{label}", fillcolor="{color}"];')
    for s, d in g.edges:
        lines.append(f"  n{s} -> n{d};")
    lines.append("}")
    return "\n".join(lines)


#: how napbench marks its pictures, so that a redraw may replace them and nothing else
_MARK = "napbench-graph"


def _png_with_mark(data: bytes) -> bytes:
    """``data`` (a PNG) with a ``tEXt Software=napbench-graph`` chunk after its IHDR chunk."""
    if data[:8] != b"\x89PNG\r\n\x1a\n" or len(data) < 33:
        return data
    body = b"Software\x00" + _MARK.encode()
    chunk = struct.pack(">I", len(body)) + b"tEXt" + body + struct.pack(">I", zlib.crc32(b"tEXt" + body) & 0xFFFFFFFF)
    return data[:33] + chunk + data[33:]


def _is_our_picture(path: Path) -> bool:
    """Whether ``path`` is a picture napbench drew (it carries the napbench mark near its start)."""
    try:
        with path.open("rb") as fh:
            head = fh.read(4096)
    except OSError:
        return False
    return _MARK.encode() in head


def draw_graph(g: CompGraph, path: str | os.PathLike[str], *, fmt: str | None = None) -> str:
    """Render ``g`` to ``path`` (PNG, SVG, PDF or DOT by suffix) with the ``dot`` program.

    Written through :func:`napbench._io.atomic_file`: an existing file is replaced only when
    it is a picture napbench drew (PNG, SVG and DOT carry a mark; a PDF is never replaced).
    """
    path = Path(path)
    fmt = fmt or path.suffix.lstrip(".").lower() or "png"
    if fmt not in ("png", "svg", "pdf", "dot"):
        raise ConversionError(f"cannot draw to format {fmt!r}; expected png, svg, pdf or dot")
    dot_src = f"// {_MARK}\n" + to_dot(g)
    if fmt == "dot":
        data = dot_src.encode()
    else:
        dot = shutil.which("dot")
        if dot is None:
            raise ConversionError("the Graphviz 'dot' program is not installed; expected it on PATH (apt-get install graphviz)")
        res = subprocess.run([dot, f"-T{fmt}"], input=dot_src.encode(), capture_output=True, check=False)
        if res.returncode != 0:
            raise ConversionError(f"dot failed: {res.stderr.decode(errors='replace').strip().splitlines()[:1]}")
        data = res.stdout
        if fmt == "png":
            data = _png_with_mark(data)
        elif fmt == "svg":
            text = data.decode("utf-8")
            cut = text.find("?>") + 2 if text.startswith("<?xml") else 0
            data = (text[:cut] + f"\n<!-- {_MARK} -->" + text[cut:]).encode("utf-8")
    with atomic_file(path, is_ours=_is_our_picture, what="picture", suffix=f".{fmt}") as tmp:
        tmp.write_bytes(data)
    return str(path)
