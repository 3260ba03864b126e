"""``cqa train --config configs/NAME.py --set key=value ... [--resume [PATH]]``.

Runs the same under ``torchrun --nproc_per_node N -m cqa_core.cli train ...`` (DDP) and as
``python -m cqa_core.commands.train ...``. ``--resume`` alone continues from the newest
checkpoint in the run's out_dir; with a path, from that checkpoint (or run) directory.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import sys
from pathlib import Path

from cqa_core.commands.common import main_of

DEFAULT_PRESET = Path(__file__).resolve().parents[2] / "configs" / "default_cpu.py"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", default=None,
                   help="preset file defining `config = TrainConfig(...)` (default: configs/default_cpu.py)")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override a config field, e.g. --set max_steps=100 --set model.stem=light (repeatable)")
    p.add_argument("--resume", nargs="?", const="", default=None, metavar="PATH",
                   help="continue a run: no value = newest checkpoint in out_dir; or a checkpoint/run dir")
    p.add_argument("--rebuild-cache", action="store_true",
                   help="with freeze_stem: rebuild a stem-feature cache built for other weights, data or "
                        "augmentation instead of refusing to start (= --set rebuild_cache=true)")
    p.add_argument("--print-config", action="store_true", help="print the resolved config as JSON and exit")


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("train", help="train CQA-Face (single process, or DDP under torchrun)")
    add_arguments(p)
    p.set_defaults(func=run)


def resolve_config(args: argparse.Namespace):
    """Preset + overrides -> TrainConfig."""
    # imported when the command runs, so `cqa --help` and the other commands never load torch
    from cqa_core.config import TrainConfig
    from cqa_core.training import feature_cache
    from cqa_core.training.overrides import apply_overrides, load_preset

    if args.config:
        config = load_preset(args.config)
    elif DEFAULT_PRESET.is_file():
        config = load_preset(DEFAULT_PRESET)
    else:
        config = TrainConfig()
    rebuild = ["rebuild_cache=true"] if getattr(args, "rebuild_cache", False) else []
    config = apply_overrides(config, [*args.overrides, *rebuild])
    places = getattr(args, "settings", None)
    if places is not None and config.eval_pairs == "auto":  # LFW View 1 under the settings' data root
        config = dataclasses.replace(config, eval_pairs=str(places.lfw / "pairsDevTest.txt"))
    if places is not None and config.freeze_stem and not config.cache_dir:  # the stem-feature cache under its root
        config = dataclasses.replace(config, cache_dir=str(feature_cache.cache_root(config, places.cache_root)))
    return config


def run(args: argparse.Namespace) -> int:
    # imported when the command runs, so `cqa --help` and the other commands never load torch
    from cqa_core.config import to_dict
    from cqa_core.training import distributed
    from cqa_core.training.trainer import Trainer

    config = resolve_config(args)
    if args.print_config:
        print(json.dumps(to_dict(config), indent=1))
        return 0
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")

    try:
        trainer = Trainer(config, resume=args.resume, cache_root=args.settings.cache_root)
        last = trainer.fit()
        if trainer.dist.is_main:
            print(json.dumps({"step": trainer.step, "out_dir": str(trainer.out_dir), **last}))
    finally:
        distributed.teardown()
    return 0


def main(argv: list[str] | None = None) -> int:
    """``python -m cqa_core.commands.train ...`` = ``cqa train ...``."""
    return main_of(register, "train", argv)


if __name__ == "__main__":
    sys.exit(main())
