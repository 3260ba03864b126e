"""insightface ``arcface_torch`` ``backbone.pth`` as a plain ArcFace recognizer.

arcface_torch trains an iResNet (``recognition/arcface_torch/backbones/iresnet.py``) and saves its
``state_dict()`` as ``backbone.pth``. :class:`ArcFaceIResNet` rebuilds that network with
insightface's own module names, so the file loads with ``strict=True``:

    conv1, bn1, prelu          3x3 conv (stride 1), BN, PReLU          (B, 64, 112, 112)
    layer1 .. layer4           IBasicBlock stages, stride 2 each       (B, 512, 7, 7)
    bn2                        BN on the last map                       (B, 512, 7, 7)
    dropout, fc, features      flatten -> dropout -> FC -> BN1d         (B, 512) embedding

The blocks are :class:`cqa_core.model.backbones.IBasicBlock` (built by ``make_stage``): their
internals (bn1, conv1, bn2, prelu, conv2 with the stride, bn3, downsample.0 / .1) are insightface's.
The file is read with ``torch.load(weights_only=True)``: no code in it runs.
"""

from __future__ import annotations

import os
import pickle
import warnings
from pathlib import Path

import torch
from torch import nn

from cqa_core.model.backbones import IRESNET_DEPTHS, conv3x3, make_stage
from cqa_core.model.transfer import iresnet_depths, read_insightface_state
from cqa_core.recognizers.base import Preprocess, Recognizer, RecognizerError
from cqa_core.recognizers.registry import LoadOptions, register_recognizer

WIDTHS = (64, 128, 256, 512)
DEFAULT_LAYER = "layer4"  # (B, 512, 7, 7), the last IBasicBlock stage (bn2 follows it)


class ArcFaceIResNet(nn.Module):
    """insightface's iResNet with its embedding head, module names as in arcface_torch.

    Args:
        depths: IBasicBlock count of layer1..layer4 (``IRESNET_DEPTHS["r50"]`` = (3, 4, 14, 3)).
        num_features: embedding size D.
        dropout: dropout probability before ``fc`` (insightface's default 0).
        spatial: side of the last map (7 for 112 x 112 input).
    """

    def __init__(self, depths: tuple[int, int, int, int], num_features: int = 512, dropout: float = 0.0,
                 spatial: int = 7) -> None:
        super().__init__()
        self.conv1 = conv3x3(3, 64)
        self.bn1 = nn.BatchNorm2d(64, eps=1e-5)
        self.prelu = nn.PReLU(64)
        cin = 64
        for i, (cout, depth) in enumerate(zip(WIDTHS, depths, strict=True), 1):
            self.add_module(f"layer{i}", make_stage(cin, cout, depth))
            cin = cout
        self.bn2 = nn.BatchNorm2d(cin, eps=1e-5)
        self.dropout = nn.Dropout(p=dropout)
        self.fc = nn.Linear(cin * spatial * spatial, num_features)
        self.features = nn.BatchNorm1d(num_features, eps=1e-5)
        nn.init.constant_(self.features.weight, 1.0)
        self.features.weight.requires_grad = False  # as insightface: the embedding BN has no trained scale

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Normalised RGB (B, 3, 112, 112) -> embedding (B, D), not L2-normalised."""
        x = self.prelu(self.bn1(self.conv1(x)))  # (B, 64, 112, 112)
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))  # (B, 512, 7, 7)
        x = self.bn2(x).flatten(1)  # (B, 512*7*7)
        x = self.dropout(x)  # (B, 512*7*7)
        return self.features(self.fc(x))  # (B, D)


def _refusal(path: Path, exc: ValueError) -> RecognizerError:
    """One line for a file ``read_insightface_state`` refused: a pickled model, or no weights at all."""
    cause = exc.__cause__
    if isinstance(cause, pickle.UnpicklingError) and "global" in str(cause).lower():  # code it would not import
        return RecognizerError(f"{path} is a pickled model, not a state dict: torch.load(weights_only=True) "
                               "refuses to run its code; save model.state_dict() and load that file")
    return RecognizerError(str(exc).splitlines()[0])


def infer_depth(state: dict[str, torch.Tensor]) -> str:
    """The iResNet name (r18 | r34 | r50 | r100) whose block counts the state dict's keys show.

    Raises:
        RecognizerError: no layer1..layer4 keys, or block counts of no known depth.
    """
    found = iresnet_depths(state)
    if not found:
        shown = ", ".join(list(state)[:4])
        raise RecognizerError(f"no layer1..layer4 keys (first keys: {shown}): not an arcface_torch iResNet backbone")
    for name, depths in IRESNET_DEPTHS.items():
        if depths == found:
            return name
    known = ", ".join(f"{n} {d}" for n, d in IRESNET_DEPTHS.items())
    raise RecognizerError(f"layer1..layer4 hold {found} blocks: not an iResNet depth the workbench builds ({known})")


def load_arcface(path: str | os.PathLike, name: str | None = None, layer: str | None = None,
                 device: str | torch.device = "cpu") -> Recognizer:
    """An arcface_torch ``backbone.pth`` (plain, DDP ``module.``-prefixed or wrapped) as a recognizer.

    Args:
        path: the state dict file (``.pth`` / ``.pt`` via ``torch.load(weights_only=True)``, or
            ``.safetensors``).
        name: display name; the file name by default.
        layer: Grad-CAM target (dotted submodule name); ``layer4`` (512 x 7 x 7) by default.
        device: where the model runs.

    Returns:
        A white-box Recognizer, kind "arcface", insightface preprocessing (RGB, (x - 127.5) / 127.5,
        ArcFace template at 112 x 112).

    Raises:
        RecognizerError: missing file, pickled model, unknown depth, or keys / shapes that do not fit.
    """
    p = Path(path).expanduser()
    try:
        state = read_insightface_state(p)
    except FileNotFoundError as exc:
        raise RecognizerError(f"{p}: no such file (an arcface_torch backbone.pth)") from exc
    except ValueError as exc:
        raise _refusal(p, exc) from exc
    state = {k.removeprefix("module."): v for k, v in state.items()}  # (a DDP state dict)
    depth = infer_depth(state)
    if "fc.weight" not in state:
        raise RecognizerError(f"{p}: an {depth} body without the fc / features embedding head; "
                              "save the whole backbone's state_dict()")
    dim, flat = state["fc.weight"].shape  # (D, 512*s*s)
    spatial = round((flat / WIDTHS[-1]) ** 0.5)
    model = ArcFaceIResNet(IRESNET_DEPTHS[depth], num_features=dim, spatial=spatial)
    try:
        model.load_state_dict(state, strict=True)  # copy_ casts an fp16 file to float32
    except RuntimeError as exc:
        first = next((ln.strip() for ln in str(exc).splitlines()[1:] if ln.strip()), str(exc))
        raise RecognizerError(f"{p}: does not load into an insightface {depth}: {first[:200]}") from exc
    size = spatial * 16  # four stride-2 stages
    return Recognizer(name=name or p.name, kind="arcface", preprocess=Preprocess(size=size), module=model.eval().to(device),
                      layer=layer or DEFAULT_LAYER, source=str(p))


def load_arcface_file(target: str | Path, options: LoadOptions) -> Recognizer:
    """The registry's loader: an insightface iResNet state dict file."""
    return load_arcface(target, layer=options.layer, device=options.device)


def register() -> None:
    register_recognizer(load_arcface_file, suffixes=(".pth", ".pt"), about="PATH.pth (insightface iResNet)")


def export_onnx(model: nn.Module, path: str | os.PathLike) -> Path:
    """An iResNet as insightface's model packs hold it: input ``data`` (N, 3, 112, 112), output
    ``fc1`` (N, 512), dynamic batch, opset 17 (the TorchScript exporter)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(model.eval(), (torch.zeros(2, 3, 112, 112),), str(path), input_names=["data"],
                          output_names=["fc1"], dynamic_axes={"data": {0: "n"}, "fc1": {0: "n"}},
                          opset_version=17, dynamo=False)
    return Path(path)
