"""The explanation engine: numpy arrays describing what CQA-Face looks at and why a pair matches.

Modules (each reads top to bottom; heavy libraries are imported inside functions):

* ``methods``        the registry: every map method by name, with what it needs from a recognizer,
                     its label, cost, sign, unit, checks and caveat
* ``analysis``       ``analyse(model or recognizer, image, other)`` -> ``FaceAnalysis`` / ``PairAnalysis``,
                     one path for every recognizer, cached
* ``branches``       a recognizer's branch readout (CQA-Face) -> ``BranchAnalysis`` / ``BranchPair``
* ``layercam``       the one Grad-CAM: at a named layer of any white-box recognizer
* ``cams``           branch attention CAMs; Grad-CAM of a CQA-Face model at its stem
* ``attribution``    pytorch-grad-cam (``TensorOutput`` adapter, ``SimilarityTarget``) and captum IG
* ``blackbox``       occlusion and RISE: perturbation maps of any recognizer, black-box ones too
* ``corr_rise``      CorrRISE (Lu et al. 2024): signed correlation maps, any recognizer
* ``xssab``          xSSAB (Huber et al. 2024): supporting and opposing arguments of the cosine
* ``similarity_map`` the exact spatial split of the cosine (Stylianou et al. 2019)
* ``decomposition``  exact (b+1) x (b+1) split of a pair's cosine, leave-one-branch-out
* ``diversity``      CAL (Eq. 2) pair terms, top-k IoU, entropy, coverage; per face or dataset
* ``quality``        QAN scores, relation matrix, region shares, effect of a synthetic mask
* ``faithfulness``   deletion / insertion curves and AUC of any map against the pair similarity
* ``maprender``      one rendering of maps: scales, colormaps by sign, colour bars (numpy + matplotlib)
* ``pictures``       what the views, the CLI and the sheet draw with it, and the charts' readings
* ``report``         an analysis on disk: PNGs with their scales and a JSON (``cqa explain``)
* ``sheet``          the one-page case sheet of a pair (self-contained HTML, PDF when possible)
* ``common``         ``ExplainError`` (torch-free)
* ``tensors``        input batches, upsampling, min-max scaling, cosine, eval mode (torch)
* ``result``         ``FaceAnalysis``, ``PairAnalysis``, ``Check``, ``MaskEffect`` (numpy only)
* ``render``         maps onto photos, branch overlays, overall quality (numpy + OpenCV only)

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
