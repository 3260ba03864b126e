"""The explanation engine: numpy arrays describing what CQA-Face looks at and why a pair matches.

Modules (each reads top to bottom; heavy libraries are imported inside functions):

* ``cams``          branch attention CAMs, warping onto the photo, overlays, hook-free Grad-CAM
* ``methods``       the registry: every map method by name, with what it needs from a recognizer
* ``attribution``   pytorch-grad-cam (``TensorOutput`` adapter, ``SimilarityTarget``) and captum IG
* ``blackbox``      occlusion and RISE: perturbation maps of any recognizer, black-box ones too
* ``layercam``      Grad-CAM at a named layer of any white-box recognizer
* ``decomposition`` exact (b+1) x (b+1) split of a pair's cosine, leave-one-branch-out
* ``diversity``     CAL (Eq. 2) pair terms, top-k IoU, entropy, coverage; per face or dataset
* ``quality``       QAN scores, relation matrix, region shares, effect of a synthetic mask
* ``faithfulness``  deletion / insertion curves and AUC of any map against the pair similarity
* ``analysis``      ``analyse(model or recognizer, image, other)`` -> ``FaceAnalysis``, cached
* ``report``        an analysis on disk: overlay PNGs and a JSON (``cqa explain``)
* ``common``        ``ExplainError`` (torch-free)
* ``tensors``       input batches, upsampling, min-max scaling, cosine, eval mode (torch)
* ``result``        ``FaceAnalysis`` / ``MaskEffect`` and their wire format (numpy only)
* ``render``        maps onto photos, overlays, overall quality (numpy + OpenCV only)

Names are imported on first use (PEP 562), so ``import cqa_core.explain.render`` does not pull
in torch: a dashboard kernel that shows a remote service's analyses stays small.
"""

import sys
import types
from importlib import import_module
from typing import Any

_WHERE = {
    "analysis": ("Analyser", "AnalysisError", "FaceAnalysis", "analyse"),
    "attribution": ("CAM_METHODS", "SimilarityTarget", "TensorOutput", "integrated_gradients", "library_cam"),
    "blackbox": ("occlusion", "rise"),
    "layercam": ("layer_gradcam",),
    "methods": ("Method", "Needs", "available", "register"),
    "cams": ("attention_cams", "similarity_gradcam"),
    "render": ("branch_overlays", "crop_support", "warp_to_photo"),
    "common": ("ExplainError",),
    "decomposition": ("decompose", "decompose_outputs", "folded_head", "leave_one_out_rerun"),
    "diversity": ("DiversityStats", "dataset_diversity", "diversity", "diversity_of_maps"),
    "faithfulness": ("Curves", "compare_maps", "curves", "similarity_score"),
    "quality": ("attention_share", "mask_effect", "quality_report", "region_area", "region_masks", "region_shares"),
}
_MODULE_OF = {name: mod for mod, names in _WHERE.items() for name in names}
__all__ = sorted(_MODULE_OF)


class _Package(types.ModuleType):
    """``diversity`` names both a submodule and its function; the package attribute stays the
    function (as with eager imports), whichever is imported first. ``sys.modules`` keeps the module."""

    def __setattr__(self, name: str, value: Any) -> None:
        if isinstance(value, types.ModuleType) and _MODULE_OF.get(name) == name:
            value = getattr(value, name)
        super().__setattr__(name, value)


sys.modules[__name__].__class__ = _Package


def __getattr__(name: str) -> Any:
    if name not in _MODULE_OF:
        raise AttributeError(f"module 'cqa_core.explain' has no attribute {name!r}")
    value = getattr(import_module(f"cqa_core.explain.{_MODULE_OF[name]}"), name)
    globals()[name] = value
    return value
