"""Tiny pipeline parameters for the flow tests."""
from pathlib import Path

import yaml

TINY_PARAMS = {
    "experiment": {"name": "test", "model": "fast_itpn_tiny_patch16_224", "model_kwargs": {"depths": [1, 1, 1]},
                   "device": "cpu", "gpus": 1, "output_dir": "outputs"},
    "data": {"root": "outputs/data", "generate": True,
             "sets": {"imagenet": {"seed": 0, "num_classes": 3, "train_per_class": 4, "val_per_class": 2,
                                   "image_size": 32}}},
    "pretrain": {"teacher": "ema", "img_size": 32, "batch_size": 4, "total_steps": 3, "warmup_steps": 1,
                 "decoder_dim": 32, "decoder_depth": 1, "decoder_heads": 2, "num_workers": 0,
                 "checkpoint_every": 2, "amp_dtype": "fp32", "progress": False},
    "finetune": {},
    "benchmark": {"resolutions": [64], "variants": ["migration_30"], "batch_size": 1, "warmup": 1,
                  "iterations": 1, "rounds": 1},
}


def write_params(directory: Path, **overrides) -> Path:
    params = {section: (dict(values) if isinstance(values, dict) else values)
              for section, values in TINY_PARAMS.items()}
    for section, values in overrides.items():
        params[section] = {**params.get(section, {}), **values}
    path = directory / "params.yaml"
    path.write_text(yaml.safe_dump(params))
    return path
