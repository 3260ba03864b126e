"""Any ONNX face embedder as a recognizer: white-box through onnx2torch, else black-box.

The graph's one input must be float (N, 3, S, S); its side S sets the chip size. The embedding is the
output named ``embedding`` when there is one (a CQA-Face export, :data:`cqa_core.export.OUTPUTS`), else
the first output, or the one named by ``output=``.

* **White-box**: ``onnx2torch.convert`` rebuilds the graph as a ``torch.fx.GraphModule``; its output is
  cut down to the embedding (nodes only other outputs need are dropped), so ``module(x)`` is (N, D).
  Its submodules are named after the ONNX nodes with dots as slashes (``/layer4/layer4.1/Add`` ->
  ``layer4/layer4/1/Add``). The Grad-CAM layer is found by
  :func:`cqa_core.recognizers.base.feature_layer` (the last of the widest maps at the last
  resolution of at least 7 x 7) unless ``layer=`` names one. The converted module is checked against
  onnxruntime on two chips before it is trusted.
* **Black-box**: ``embed`` runs an onnxruntime CPU session. Used when ``whitebox=False``, or when the
  conversion or its check fails; :attr:`Recognizer.note` then says why in one line, naming the
  ONNX op onnx2torch could not convert.
"""

from __future__ import annotations

import operator
import os
import re
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from cqa_core.checkpoint import file_digest
from cqa_core.recognizers.base import (
    Preprocess,
    Recognizer,
    RecognizerError,
    feature_layer,
    find_layer,
)
from cqa_core.recognizers.registry import LoadOptions, register_recognizer

EMBEDDING = "embedding"  # the embedding output of a CQA-Face export (cqa_core.export.OUTPUTS[0])
MIN_SIDE = 7  # the Grad-CAM layer is a map of at least 7 x 7
PARITY_TOL = 1e-3  # converted vs onnxruntime: max |diff| <= PARITY_TOL * (1 + max |embedding|)


@dataclass
@dataclass(frozen=True)
class GraphIO:
    """The graph's input and the chosen embedding output.

    Attributes:
        input: name of the image input.
        size: chip side S.
        batch: the input's fixed batch size, None when dynamic.
        output: name of the embedding output.
    """

    input: str
    size: int
    batch: int | None
    output: str


def _read(p: Path) -> Any:
    """The ModelProto of ``p``, or a one-line RecognizerError."""
    import onnx  # the export extra

    if not p.is_file():
        raise RecognizerError(f"{p}: no such file (an ONNX face embedder)")
    try:
        model = onnx.load(str(p))
    except Exception as exc:  # DecodeError, OSError, ...: not a protobuf ModelProto
        raise RecognizerError(f"{p}: not an ONNX file ({type(exc).__name__}: {str(exc)[:120]})") from exc
    if not model.graph.node or not model.graph.input or not model.graph.output:
        raise RecognizerError(f"{p}: not an ONNX model (no graph nodes, inputs or outputs)")
    return model


def graph_io(model: Any, size: int | None = None, output: str | int | None = None) -> GraphIO:
    """Check the graph's image input and pick its embedding output.

    Raises:
        RecognizerError: input rank / channels / type / side unusable, or ``output`` unknown.
    """
    import onnx  # optional: the export extra

    inits = {t.name for t in model.graph.initializer}
    inputs = [v for v in model.graph.input if v.name not in inits]  # old exports list weights as inputs too
    if len(inputs) != 1:
        shown = ", ".join(repr(v.name) for v in inputs) or "none"
        raise RecognizerError(f"the graph has {len(inputs)} inputs ({shown}); a face embedder takes one image input")
    inp = inputs[0]
    tt = inp.type.tensor_type
    dims = [d.dim_value if d.HasField("dim_value") else None for d in tt.shape.dim]
    if not tt.HasField("shape"):
        dims = [None] * 4  # no shape recorded: assume [N, 3, S, S] and ask for S
    shown = "[" + ", ".join("?" if d is None else str(d) for d in dims) + "]"
    if len(dims) != 4:
        raise RecognizerError(f"input {inp.name!r} has shape {shown}; a face embedder takes images [N, 3, S, S]")
    if dims[1] not in (3, None):
        hint = " (channels-last; export it NCHW)" if dims[3] == 3 else ""
        raise RecognizerError(f"input {inp.name!r} has shape {shown}: {dims[1]} channels, not 3{hint}")
    if tt.elem_type != onnx.TensorProto.FLOAT:
        kind = onnx.TensorProto.DataType.Name(tt.elem_type)
        raise RecognizerError(f"input {inp.name!r} is {kind}; the workbench feeds float32 images")
    h, w = dims[2], dims[3]
    if h is not None and w is not None and h != w:
        raise RecognizerError(f"input {inp.name!r} has shape {shown}: not square ({h} x {w}); the chips are square")
    side = h or w
    if side is None and size is None:
        raise RecognizerError(f"input {inp.name!r} has a dynamic side {shown}: pass size= (e.g. 112)")
    if side is not None and size is not None and size != side:
        raise RecognizerError(f"size={size} given, but input {inp.name!r} is fixed at {shown}")
    names = [o.name for o in model.graph.output]
    if output is None:
        chosen = EMBEDDING if EMBEDDING in names else names[0]
    elif isinstance(output, int) and 0 <= output < len(names):
        chosen = names[output]
    elif output in names:
        chosen = str(output)
    else:
        raise RecognizerError(f"output {output!r} is not an output of the graph; it has {', '.join(names)}")
    if not any(chosen in n.output for n in model.graph.node):
        raise RecognizerError(f"output {chosen!r} is not computed by a node (an input or a constant)")
    return GraphIO(inp.name, int(side or size), dims[0], chosen)


def _first_line(exc: BaseException) -> str:
    """The first non-empty line of an exception's message (at most 160 characters)."""
    lines = [ln.strip() for ln in str(exc).splitlines() if ln.strip()]
    return lines[0][:160] if lines else ""


def failed_op(exc: BaseException) -> str:
    """The ONNX op (and node) an onnx2torch conversion failed on, from its traceback or message."""
    op = node = None
    tb = exc.__traceback__
    while tb is not None:  # onnx2torch.convert's loop variable holds the node being converted
        onnx_node = tb.tb_frame.f_locals.get("onnx_node")
        if tb.tb_frame.f_globals.get("__name__", "").startswith("onnx2torch") and onnx_node is not None:
            op, node = onnx_node.operation_type, onnx_node.name
        tb = tb.tb_next
    if op is None:
        m = re.search(r"operation_type='([^']+)'", str(exc))
        op = m.group(1) if m else None
    if op is None:
        return f"the graph ({type(exc).__name__}: {_first_line(exc)})"
    return f"op {op}" + (f" (node {node!r})" if node else "")


def keep_output(gm: torch.fx.GraphModule, model: Any, output: str) -> torch.fx.GraphModule:
    """Cut an onnx2torch GraphModule down to the one graph output ``output`` (in place)."""
    producer = {v: (i, k) for i, n in enumerate(model.graph.node) for k, v in enumerate(n.output)}
    order = list(dict.fromkeys(producer[o.name][0] for o in model.graph.output))  # onnx2torch's output order
    i, k = producer[output]
    out_node = next(n for n in gm.graph.nodes if n.op == "output")
    value = out_node.args[0]
    chosen = value[order.index(i)] if len(order) > 1 else value
    if len(model.graph.node[i].output) > 1:  # a multi-output node returns a tuple
        with gm.graph.inserting_before(out_node):
            chosen = gm.graph.call_function(operator.getitem, (chosen, k))
    out_node.args = (chosen,)
    gm.graph.eliminate_dead_code()
    gm.delete_all_unused_submodules()
    gm.recompile()
    return gm


def run_session(session: Any, io: GraphIO, x: np.ndarray) -> np.ndarray:
    """Embeddings (N, D) float32 of a preprocessed batch x (N, 3, S, S), in the graph's fixed batch if any."""
    x = np.ascontiguousarray(x, np.float32)  # (N, 3, S, S)
    if io.batch is None or io.batch == len(x):
        return np.asarray(session.run([io.output], {io.input: x})[0], np.float32)  # (N, D)
    out = []
    for i in range(0, len(x), io.batch):
        part = x[i:i + io.batch]  # (n, 3, S, S)
        pad = np.zeros((io.batch - len(part), *x.shape[1:]), np.float32)  # (batch - n, 3, S, S)
        out.append(session.run([io.output], {io.input: np.concatenate([part, pad])})[0][:len(part)])
    return np.concatenate(out).astype(np.float32)  # (N, D)


def _probe_chips(size: int) -> np.ndarray:
    """Two deterministic noise chips (2, S, S, 3) uint8 for the checks."""
    return np.random.default_rng(0).integers(0, 256, (2, size, size, 3), dtype=np.uint8)


def inline_identities(model: Any) -> Any:
    """A copy of the graph whose ``Identity`` nodes of an initializer are gone, their readers reading
    the initializer itself.

    PyTorch's exporter stores equal tensors once and aliases the others through ``Identity``: a freshly
    initialised model's folded Conv biases are all zero, so most become ``Identity(layer1.0.bn1.bias)``.
    onnx2torch reads a Conv's weight and bias only from the initializers and fails on them.
    """
    inits = {i.name for i in model.graph.initializer}
    alias = {n.output[0]: n.input[0] for n in model.graph.node if n.op_type == "Identity" and n.input[0] in inits}
    outputs = {o.name for o in model.graph.output}
    alias = {k: v for k, v in alias.items() if k not in outputs}
    if not alias:
        return model
    model = type(model).FromString(model.SerializeToString())  # a copy: the session keeps the original
    for node in model.graph.node:
        node.input[:] = [alias.get(name, name) for name in node.input]
    keep = [n for n in model.graph.node if not (n.op_type == "Identity" and n.output[0] in alias)]
    del model.graph.node[:]
    model.graph.node.extend(keep)
    return model


def _convert(model: Any, io: GraphIO, pre: Preprocess, want: np.ndarray) -> tuple[nn.Module | None, str]:
    """(converted module returning the embedding, "") or (None, why it cannot be used)."""
    try:
        from onnx2torch import convert  # optional dependency: without it the model is black-box
    except ImportError:
        return None, "onnx2torch is not installed (pip install onnx2torch): black-box, occlusion / RISE only"
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            module = keep_output(convert(inline_identities(model)), model, io.output).eval()
    except Exception as exc:  # NotImplementedError / KeyError / ...: some node has no converter
        return None, f"onnx2torch cannot convert {failed_op(exc)}: black-box, occlusion / RISE only"
    try:
        with torch.no_grad():
            got = module(pre.to_tensor(_probe_chips(io.size))).float().numpy()  # (2, D)
    except Exception as exc:  # a converted op that fails at run time
        return None, f"onnx2torch's module fails on a batch of 2 ({type(exc).__name__}: {_first_line(exc)}): black-box"
    diff = float(np.abs(got - want).max()) if got.shape == want.shape else float("inf")
    if diff > PARITY_TOL * (1.0 + float(np.abs(want).max())):
        return None, f"onnx2torch's module differs from onnxruntime (max |diff| {diff:.3g}): black-box"
    return module, ""


def node_layer(module: nn.Module, layer: str) -> str:
    """A converted submodule's name from itself or from its ONNX node name (``/layer4/layer4.1/Add``).

    Raises:
        RecognizerError: neither names a submodule; lists up to 3 nodes of the same op as a hint.
    """
    known = dict(module.named_modules())
    name = layer if layer in known else layer.replace(".", "/").lstrip("/")  # onnx2torch's renaming
    if name not in known:
        near = [n for n in known if n and n.rsplit("/", 1)[-1] == name.rsplit("/", 1)[-1]][-3:]
        hint = f"; e.g. {', '.join(near)}" if near else "; give an ONNX node name (dots become slashes)"
        raise RecognizerError(f"layer {layer!r} is not a node of the converted graph{hint}")
    find_layer(module, name)
    return name


def _triple(v: float | tuple[float, ...]) -> tuple[float, float, float]:
    """A per-channel value from one number or three."""
    t = tuple(float(x) for x in (v if isinstance(v, (tuple, list)) else (v,) * 3))
    if len(t) != 3:
        raise RecognizerError(f"mean / std take one value or three (one per channel), got {v!r}")
    return t  # type: ignore[return-value]


def _embedder(session: Any, io: GraphIO, pre: Preprocess) -> Callable[[np.ndarray], np.ndarray]:
    """embed_fn of a black-box model: uint8 RGB chips (N, S, S, 3) -> (N, D) through onnxruntime."""

    def embed(chips: np.ndarray) -> np.ndarray:
        return run_session(session, io, pre.to_tensor(chips).numpy())  # (N, D)

    return embed


def load_onnx(path: str | os.PathLike, mean: float | tuple[float, float, float] = (127.5,) * 3,
              std: float | tuple[float, float, float] = (127.5,) * 3, bgr: bool = False, layer: str | None = None,
              whitebox: bool = True, output: str | int | None = None, size: int | None = None,
              template: str = "arcface", name: str | None = None, device: str | torch.device = "cpu") -> Recognizer:
    """An ONNX face embedder as a recognizer.

    Args:
        path: the ``.onnx`` file; its one input is float [N, 3, S, S].
        mean: value(s) subtracted from 0-255 pixels (one, or one per channel in the model's order).
        std: divisor(s) after the subtraction.
        bgr: the model reads BGR.
        layer: Grad-CAM layer: a converted submodule name or the ONNX node name
            (``/layer4/layer4.1/Add``); found automatically when None.
        whitebox: try onnx2torch; False loads it black-box (onnxruntime) directly.
        output: the embedding output (name or index); ``embedding`` if present, else the first.
        size: the chip side, needed only when the graph's side is dynamic.
        template: alignment template of the chip (a key of ``base.TEMPLATES``).
        name: display name; the file name by default.
        device: where a converted (white-box) module runs; onnxruntime runs a black-box one on the CPU.

    Returns:
        An :class:`Recognizer` of kind "onnx": white-box (``module``, ``layer``) or black-box
        (``embed_fn`` on onnxruntime, ``note`` saying why).

    Raises:
        RecognizerError: missing file, not ONNX, an unusable input or output, a layer name that is not
            in the converted module, onnx / onnxruntime missing.
    """
    p = Path(path).expanduser()
    try:
        import onnx  # noqa: F401 - the export extra: onnx reads the graph, onnxruntime runs it
        import onnxruntime as ort
    except ImportError as exc:
        raise RecognizerError("onnx and onnxruntime are needed for ONNX models: pip install onnx onnxruntime") from exc
    model = _read(p)
    io = graph_io(model, size, output)
    pre = Preprocess(size=io.size, template=template, mean=_triple(mean), std=_triple(std), bgr=bgr)
    try:
        session = ort.InferenceSession(str(p), providers=["CPUExecutionProvider"])
        want = run_session(session, io, pre.to_tensor(_probe_chips(io.size)).numpy())  # (2, D)
    except Exception as exc:  # onnxruntime's own load / run errors
        raise RecognizerError(f"{p}: onnxruntime cannot run it ({type(exc).__name__}: {_first_line(exc)})") from exc
    if want.ndim != 2:
        raise RecognizerError(f"output {io.output!r} has shape {want.shape} for 2 chips; an embedding is (N, D)")
    common = dict(name=name or p.name, kind="onnx", preprocess=pre, source=str(p), digest="onnx-" + file_digest(p))
    module, note = _convert(model, io, pre, want) if whitebox else (None, "loaded black-box (whitebox=False)")
    if module is None:
        if layer is not None:
            note += f"; layer {layer!r} not used"
        return Recognizer(embed_fn=_embedder(session, io, pre), note=note, **common)
    if layer is not None:
        layer = node_layer(module, layer)
    else:
        try:
            layer = feature_layer(module, pre, MIN_SIDE)
        except RecognizerError:
            note = f"no layer outputs a {MIN_SIDE} x {MIN_SIDE} or larger map: input gradients only, no Grad-CAM"
    return Recognizer(module=module.to(device), layer=layer, note=note, **common)


def load_onnx_file(target: str | Path, options: LoadOptions) -> Recognizer:
    """The registry's loader: an ONNX face embedder file (insightface's preprocessing)."""
    return load_onnx(target, layer=options.layer, device=options.device)


def register() -> None:
    register_recognizer(load_onnx_file, suffixes=(".onnx",), about="PATH.onnx")

