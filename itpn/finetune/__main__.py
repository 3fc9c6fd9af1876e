"""``python -m itpn.finetune <task> --config ...``: one fine-tune, metrics written for the results store.

Tasks: ``classification`` (a YAML of ``ClassificationConfig`` fields), ``detection``,
``segmentation``, ``rotated`` (DOTA; configs under ``configs/``; need the OpenMMLab stack),
``variants`` (one fine-tuned classifier under several acceleration variants).

On several GPUs: ``torchrun --nproc-per-node 8 -m itpn.finetune <task> --config ... --launcher pytorch``
(classification reads the torchrun environment by itself).
"""
from __future__ import annotations

import argparse
import json
import logging
import sys
from typing import Any, Optional, Sequence

import yaml

from itpn.records import TASKS, write_metrics


def _overrides(pairs: Sequence[str]) -> dict[str, Any]:
    """``key=value`` pairs; values parse as YAML (numbers, lists, null ...)."""
    values = {}
    for pair in pairs:
        if "=" not in pair:
            raise SystemExit(f"--set takes key=value, got {pair!r}")
        key, value = pair.split("=", 1)
        values[key] = yaml.safe_load(value)
    return values


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m itpn.finetune", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("task", choices=(*TASKS, "variants"))
    parser.add_argument("--config", help="YAML (classification) or OpenMMLab .py config")
    parser.add_argument("--section", help="classification: the section of the YAML file to read (e.g. finetune)")
    parser.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE",
                        help="override config fields (OpenMMLab: dotted keys, e.g. train_cfg.max_iters=20)")
    parser.add_argument("--checkpoint", help="pre-training export to start from (OpenMMLab tasks), or the "
                                             "fine-tuned model.safetensors (variants)")
    parser.add_argument("--variant", help="acceleration variant of the backbone (OpenMMLab tasks)")
    parser.add_argument("--data-root", help="data set location (OpenMMLab tasks; DOTA: the unsplit data set; "
                                            "variants: the ImageNet folder)")
    parser.add_argument("--work-dir", help="OpenMMLab work dir (checkpoints, logs)")
    parser.add_argument("--output", help="where metrics.json and curve.jsonl go (default: the work dir)")
    parser.add_argument("--launcher", default="none", choices=("none", "pytorch", "slurm", "mpi"),
                        help="OpenMMLab distributed launcher (pytorch under torchrun)")
    parser.add_argument("--eval-only", action="store_true", help="OpenMMLab tasks: evaluate without training")
    parser.add_argument("--variants", nargs="*", default=[], help="variants: the acceleration variants to evaluate")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    overrides = _overrides(args.set)

    if args.task == "classification":
        from itpn.finetune import ClassificationConfig, run_classification

        if not args.config:
            parser.error("classification needs --config")
        config = ClassificationConfig.from_yaml(args.config, args.section)
        if overrides:
            config = ClassificationConfig.from_dict({**config.to_dict(), **overrides}, source="--set")
        rows = run_classification(config).metrics
    elif args.task == "variants":
        from itpn.finetune import evaluate_variants
        from itpn.runtime import setup_runtime

        if not (args.checkpoint and args.data_root and args.variants):
            parser.error("variants needs --checkpoint, --data-root and --variants")
        runtime = setup_runtime(overrides.pop("device", "auto"))  # under torchrun each rank takes a share
        rows = evaluate_variants(args.checkpoint, args.data_root, args.variants, runtime=runtime, **overrides)
        if args.output and runtime.is_main:
            write_metrics(args.output, rows)
    else:
        from itpn import mmlab

        if not args.config:
            parser.error(f"{args.task} needs --config (see configs/)")
        runner = {"detection": mmlab.run_detection, "segmentation": mmlab.run_segmentation,
                  "rotated": mmlab.run_rotated}[args.task]
        rows = runner(args.config, checkpoint=args.checkpoint, variant=args.variant, data_root=args.data_root,
                      work_dir=args.work_dir, output_url=args.output, train=not args.eval_only,
                      cfg_options=dict(overrides, launcher=args.launcher))
    json.dump(rows, sys.stdout, indent=2)
    sys.stdout.write("\n")
    return 0


if __name__ == "__main__":  # the DOTA metric spawns worker processes that re-import this module
    sys.exit(main())
