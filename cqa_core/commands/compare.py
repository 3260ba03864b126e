"""``cqa compare RUN_A RUN_B``: two recognizers on the same pairs, pair by pair.

Prints both accuracies, the 2 x 2 table of right and wrong, McNemar's exact test on the
disagreements, the per-fold differences and the pairs each gets right that the other gets wrong
(worst margin first). ``--out FILE`` writes all of it as JSON (every disagreement, not only the
ones printed). Runs of different pair lists are refused in one line (exit 2).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("compare", help="compare two runs (cqa eval --out) pair by pair: 2x2 table, McNemar",
                       description="Compares two runs of the same pairs (written by cqa eval --out).")
    p.add_argument("run_a", metavar="RUN_A", help="a run folder (cqa eval --out RUN_A)")
    p.add_argument("run_b", metavar="RUN_B", help="another run of the same pairs")
    p.add_argument("--out", default=None, metavar="FILE", help="write the comparison as JSON")
    p.add_argument("--show", type=int, default=10, metavar="N", help="disagreements printed per side (default 10)")
    p.set_defaults(func=run)


def _pair_line(r: dict) -> str:
    """One disagreement: id, label, each run's score, outcome and margin on the correct side, the photos."""
    name = Path(r["path1"]).name + " / " + Path(r["path2"]).name
    label = "same" if r["same"] else "diff"
    return (f"    #{r['pair_id']:<6} {label}  A {r['score_a']:+.4f} ({r['outcome_a']}, margin {r['margin_a']:+.4f})  "
            f"B {r['score_b']:+.4f} ({r['outcome_b']}, margin {r['margin_b']:+.4f})  {name}")


def run(args: argparse.Namespace) -> int:
    from cqa_core.evaluation.runs.compare import compare_runs  # DuckDB, scipy: only here

    c = compare_runs(args.run_a, args.run_b)
    t = c.table
    print(f"cqa compare\n  A  {c.a}: {100 * c.accuracy_a:.2f}%\n  B  {c.b}: {100 * c.accuracy_b:.2f}%")
    print(f"\n  {'':<12}{'B right':>10}{'B wrong':>10}")
    print(f"  {'A right':<12}{t['both right']:>10}{t['only A right']:>10}")
    print(f"  {'A wrong':<12}{t['only B right']:>10}{t['both wrong']:>10}")
    print(f"\n  McNemar exact test on the {t['only A right'] + t['only B right']} disagreements: p = {c.p_value:.4g}")
    print("\n  fold   pairs   A acc    B acc    A - B")
    for f in c.folds:
        print(f"  {f['fold']:>4} {f['pairs']:>7} {100 * f['accuracy_a']:>7.2f}% {100 * f['accuracy_b']:>7.2f}% "
              f"{100 * f['difference']:>+7.2f}")
    for title, rows in (("only A right (B's worst margin first)", c.only_a_right),
                        ("only B right (A's worst margin first)", c.only_b_right)):
        print(f"\n  {title}: {len(rows)}")
        for r in rows[:args.show]:
            print(_pair_line(r))
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps(c.to_dict(), indent=2))
        print(f"\nwrote {args.out}")
    return 0
