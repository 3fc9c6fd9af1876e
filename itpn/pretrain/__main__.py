"""``python -m itpn.pretrain --config params.yaml [--section pretrain] [--set key=value ...]``;
run it under ``torchrun --nproc_per_node N`` for DDP (add ``--set fsdp=true`` for FSDP)."""
from __future__ import annotations

import argparse
import json
import logging
import sys
from dataclasses import asdict

import yaml

from .config import PretrainConfig
from .trainer import run_pretraining


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m itpn.pretrain", description=__doc__)
    parser.add_argument("--config", required=True, help="YAML file (fsspec URL) holding the run's settings")
    parser.add_argument("--section", default="pretrain", help="section of the YAML file; '' for the whole file")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="override one setting (the value is parsed as YAML)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    config = PretrainConfig.from_yaml(args.config, args.section or None)
    overrides = {}
    for item in args.set:
        key, separator, value = item.partition("=")
        if not separator:
            parser.error(f"--set takes KEY=VALUE, got {item!r}")
        overrides[key] = yaml.safe_load(value)
    if overrides:
        config = PretrainConfig.from_dict({**config.to_dict(), **overrides}, source="--set")
    result = run_pretraining(config)
    print(json.dumps(asdict(result)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
