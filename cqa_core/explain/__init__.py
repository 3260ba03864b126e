"""The explanation engine: numpy arrays describing what CQA-Face looks at and why a pair matches.

Modules (each reads top to bottom; heavy libraries are imported inside functions):

* ``cams``          branch attention CAMs, warping onto the photo, overlays, hook-free Grad-CAM
* ``attribution``   pytorch-grad-cam (``TensorOutput`` adapter, ``SimilarityTarget``) and captum
* ``decomposition`` exact (b+1) x (b+1) split of a pair's cosine, leave-one-branch-out
* ``diversity``     CAL (Eq. 2) pair terms, top-k IoU, entropy, coverage; per face or dataset
* ``quality``       QAN scores, relation matrix, region shares, effect of a synthetic mask
* ``faithfulness``  deletion / insertion curves and AUC of any map against the pair similarity
* ``analysis``      ``analyse(model, image, other)`` -> ``FaceAnalysis``, cached
"""

from cqa_core.explain.analysis import Analyser, AnalysisError, FaceAnalysis, analyse
from cqa_core.explain.attribution import (
    CAM_METHODS,
    SimilarityTarget,
    TensorOutput,
    integrated_gradients,
    library_cam,
    occlusion,
)
from cqa_core.explain.cams import (
    attention_cams,
    branch_overlays,
    crop_support,
    gradcam_from_features,
    overlay,
    similarity_gradcam,
    warp_to_photo,
)
from cqa_core.explain.common import ExplainError
from cqa_core.explain.decomposition import (
    decompose,
    decompose_outputs,
    folded_head,
    leave_one_out_rerun,
)
from cqa_core.explain.diversity import (
    DiversityStats,
    dataset_diversity,
    diversity,
    diversity_of_maps,
)
from cqa_core.explain.faithfulness import Curves, compare_maps, curves, similarity_score
from cqa_core.explain.quality import (
    attention_share,
    mask_effect,
    quality_report,
    region_area,
    region_masks,
    region_shares,
)

__all__ = [
    "CAM_METHODS", "AnalysisError", "Analyser", "Curves", "DiversityStats", "ExplainError", "FaceAnalysis",
    "SimilarityTarget", "TensorOutput", "analyse", "attention_cams", "attention_share", "branch_overlays", "compare_maps",
    "crop_support", "curves", "dataset_diversity", "decompose", "decompose_outputs", "diversity",
    "diversity_of_maps", "folded_head", "gradcam_from_features", "integrated_gradients", "leave_one_out_rerun",
    "library_cam", "mask_effect", "occlusion", "overlay", "quality_report", "region_area", "region_masks",
    "region_shares", "similarity_gradcam", "similarity_score", "warp_to_photo",
]
