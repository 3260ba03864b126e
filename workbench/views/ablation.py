"""Plots of the ablation grid (``cqa_core.evaluation.ablation``) for notebooks/07_ablation.ipynb."""

from __future__ import annotations

from typing import Any

from plotly.subplots import make_subplots

from cqa_core.evaluation.ablation import CELLS, LABELS


def ablation_figure(runs: list[dict[str, Any]]) -> Any:
    """Per cell: every seed as a dot and the mean as a dash, for LFW / masked-LFW accuracy, the
    Gaussian similarity of the attention maps, and the quality drop of mask-looking branches."""
    panels = [("LFW accuracy %", lambda r: 100 * r["lfw"]["accuracy"]),
              ("masked LFW (M2N) accuracy %", lambda r: 100 * r["masked_m2n"]["accuracy"]),
              ("Gaussian similarity of maps (lower = more diverse)", lambda r: r["diversity"]["mean_gaussian"]),
              ("QAN quality drop, mask-looking branches", lambda r: r["mask_quality"]["drop_looking"])]
    fig = make_subplots(rows=2, cols=2, subplot_titles=[t for t, _ in panels], vertical_spacing=0.2)
    cells = [c for c in CELLS if any(r["cell"] == c for r in runs)]
    names = [LABELS[c] for c in cells]
    for k, (_, value) in enumerate(panels):
        row, col = k // 2 + 1, k % 2 + 1
        means, xs, ys = [], [], []
        for c, name in zip(cells, names, strict=True):
            vals = [v for v in (value(r) for r in runs if r["cell"] == c) if v is not None]
            means.append(sum(vals) / len(vals) if vals else None)
            xs += [name] * len(vals)
            ys += vals
        fig.add_scatter(x=names, y=means, mode="markers", row=row, col=col, showlegend=False, name="mean",
                        marker={"symbol": "line-ew-open", "size": 34, "line": {"width": 3, "color": "#c33"}})
        fig.add_scatter(x=xs, y=ys, mode="markers", row=row, col=col, marker={"color": "#234", "size": 7},
                        showlegend=False, name="seed")
    fig.update_layout(height=720, width=980, margin={"t": 60, "b": 40, "l": 50, "r": 20})
    fig.update_xaxes(tickangle=-25)
    return fig
