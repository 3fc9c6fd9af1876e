"""``python -m itpn.pretrain [--config params.yaml [--section pretrain]] [--recipe NAME] [--set key=value ...]``;
run it under ``torchrun --nproc_per_node N`` for DDP (add ``--set fsdp=true`` for FSDP).

``--recipe`` picks a named recipe (``itpn.pretrain.config.RECIPES``: itpn_pixel, itpn_clip_b16,
itpn_clip_l14, fast_itpn_clip_l); the config file's keys and then ``--set`` override its settings."""
from __future__ import annotations

import argparse
import json
import logging
import sys
from dataclasses import asdict

import yaml

from itpn.config import read_yaml_section

from .config import RECIPES, PretrainConfig
from .trainer import run_pretraining


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m itpn.pretrain", description=__doc__)
    parser.add_argument("--config", help="YAML file (fsspec URL) holding the run's settings")
    parser.add_argument("--section", default="pretrain", help="section of the YAML file; '' for the whole file")
    parser.add_argument("--recipe", choices=sorted(RECIPES), help="named recipe the other settings override")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="override one setting (the value is parsed as YAML)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    if not args.config and not args.recipe:
        parser.error("give --config FILE, --recipe NAME, or both")
    values = read_yaml_section(args.config, args.section or None) if args.config else {}
    if args.recipe:
        values["recipe"] = args.recipe
    overrides = {}
    for item in args.set:
        key, separator, value = item.partition("=")
        if not separator:
            parser.error(f"--set takes KEY=VALUE, got {item!r}")
        overrides[key] = yaml.safe_load(value)
    config = PretrainConfig.from_dict({**values, **overrides}, source=args.config or "the command line")
    result = run_pretraining(config)
    print(json.dumps(asdict(result)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
