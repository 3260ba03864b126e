"""CQA-Face model: stems, LANet branches, QAN, margin heads."""

from cqa_core.model.backbones import IResNet, create_stem
from cqa_core.model.cqa_face import CQAFace, CQAOutput, create_model
from cqa_core.model.heads import ArcFace, CosFace, create_head

__all__ = [
    "ArcFace", "CQAFace", "CQAOutput", "CosFace", "IResNet", "create_head", "create_model", "create_stem",
]
