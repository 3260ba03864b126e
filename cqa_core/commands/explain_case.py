"""What ``cqa explain`` says about a pair beyond its files: the verdict at the model's own threshold,
each map's checks, and the one-page case sheet (``--sheet``).

The threshold is the model's own (``evaluation.threshold``): read from its cache, computed once on
LFW View 1 when the photos are there (minutes the first time), else one line saying why there is none.
Imported by ``commands.explain`` only when it runs (torch).
"""

from __future__ import annotations

import argparse
import shlex
import sys
from datetime import datetime, timezone
from pathlib import Path

from cqa_core.evaluation.runs.calibration import load_calibration
from cqa_core.evaluation.runs.calibration import verdict_line as calibrated_line
from cqa_core.evaluation.threshold import PAIRS, lfw_threshold, threshold_path
from cqa_core.explain import methods as registry
from cqa_core.explain.maprender import PER_MAP, SHARED_PAIR
from cqa_core.explain.pictures import MapKind, kind_of
from cqa_core.explain.result import PairAnalysis
from cqa_core.explain.sheet import SheetFacts, Verdict, case_sheet, to_pdf, write_sheet
from cqa_core.recognizers.base import Recognizer
from cqa_core.recognizers.cqa_files import UNTRAINED
from cqa_core.settings import Settings


def map_kinds() -> dict[str, MapKind]:
    """Every registered method's :class:`MapKind` (signed, unit), from its registry record."""
    return {name: kind_of(m.record()) for name, m in registry.methods().items()}


def normalisation(args: argparse.Namespace) -> str:
    """The pair maps' scale the flags ask for."""
    return PER_MAP if getattr(args, "per_map", False) else SHARED_PAIR


def model_threshold(rec: Recognizer, settings: Settings) -> tuple[dict | None, str]:
    """(the threshold record of ``lfw_threshold``, '') or (None, one line on why there is none).

    Computed (and cached) when LFW View 1 is present and no threshold is cached; progress goes to stderr.
    """
    path = threshold_path(rec, settings.cache_root)
    if not path.is_file():
        if rec.note == UNTRAINED:
            return None, f"no verdict: {rec.name} is untrained, so it has no threshold worth computing"
        if not (settings.lfw / PAIRS).is_file():
            return None, (f"no verdict: no threshold is cached for {rec.name} ({path}) and this machine has no "
                          f"LFW View 1 ({settings.lfw / PAIRS}) to compute one on")
        print(f"{rec.name}: computing its own threshold on LFW View 1 (once; kept in {path})", file=sys.stderr)
    record = lfw_threshold(rec, settings.lfw, settings.cache_root, progress=lambda t: print(t, file=sys.stderr),
                           path=path)
    return record, ""


def threshold_source(record: dict) -> str:
    """'LFW View 1 pairsDevTest.txt: the best accuracy (86.8%) over its 1000 pairs'."""
    return (f"{record['source']}: the cosine with the best accuracy ({100 * record['accuracy']:.1f}%) "
            f"over its {record['pairs']} pairs")


def verdict_of(rec: Recognizer, settings: Settings, similarity: float, confidence: str = "") -> Verdict:
    record, why = model_threshold(rec, settings)
    if record is None:
        return Verdict(similarity, None, why, confidence)
    return Verdict(similarity, float(record["threshold"]), threshold_source(record), confidence)


def verdict_line(rec: Recognizer, v: Verdict) -> str:
    """'verdict: same person (cosine 0.7432 >= threshold 0.2569, default model's own: LFW View 1 ...)'."""
    if v.threshold is None:
        return v.source
    sign = ">=" if v.same else "<"
    return (f"verdict: {v.words()} (cosine {v.similarity:.4f} {sign} threshold {v.threshold:.4f}, "
            f"{rec.name}'s own threshold from {v.source})")


def check_lines(pair: PairAnalysis) -> list[str]:
    """Each method's checks of face a's and face b's map, one line each."""
    return [f"{method} check, face {'ab'[i]}: {c.text}" for method, cs in pair.checks.items() for i, c in enumerate(cs)]


def command_line(args: argparse.Namespace) -> str:
    """The command that reproduces this run, from its parsed arguments (paths as given)."""
    parts = ["cqa", "explain", args.image, args.other]
    for flag, value in (("--model", args.model), ("--methods", args.methods), ("--layer", args.layer),
                        ("--out", args.out), ("--reference", args.reference), ("--sheet", args.sheet)):
        if value:
            parts += [flag, str(value)]
    if args.alpha != 0.5:
        parts += ["--alpha", str(args.alpha)]
    if getattr(args, "per_map", False):
        parts.append("--per-map")
    if args.device != "cpu":
        parts += ["--device", args.device]
    return shlex.join(p for p in parts if p)


def report_pair(args: argparse.Namespace, rec: Recognizer, pair: PairAnalysis) -> Verdict:
    """Print the verdict at the model's threshold and the maps' checks; write the case sheet if asked
    (with the calibrated confidence when ``--reference`` names a run of this model)."""
    confidence = ""
    if args.reference:  # a saved calibration of a run of this model (``evaluation.runs.calibration``)
        confidence = calibrated_line(load_calibration(args.reference, rec.digest), float(pair.similarity))
    v = verdict_of(rec, args.settings, float(pair.similarity), confidence)
    print(verdict_line(rec, v))
    if confidence:
        print(f"confidence: {confidence}")
    for line in check_lines(pair):
        print(line)
    if args.sheet:
        write_case_sheet(args, rec, pair, v)
    return v


def write_case_sheet(args: argparse.Namespace, rec: Recognizer, pair: PairAnalysis, v: Verdict) -> list[Path]:
    """``--sheet PATH``: the HTML case sheet, and a PDF beside it when headless Chromium is installed."""
    facts = SheetFacts(image=str(args.image), other=str(args.other), model=rec.name, digest=rec.digest,
                       command=command_line(args), date=datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
                       verdict=v)
    page = write_sheet(args.sheet, case_sheet(pair, facts, map_kinds(), normalisation(args), args.alpha))
    pdf = to_pdf(page, page.with_suffix(".pdf"))
    print(f"case sheet: {page}" + (f" and {pdf}" if pdf else " (no PDF: no headless Chromium installed)"))
    return [page, *([pdf] if pdf else [])]
