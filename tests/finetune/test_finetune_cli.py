import json

import yaml

from itpn.finetune.__main__ import main

from finetune_helpers import TINY


def test_cli_fine_tunes_from_a_yaml_section_and_evaluates_variants(imagenet_dir, tmp_path, capsys):
    params = tmp_path / "params.yaml"
    params.write_text(yaml.safe_dump({"finetune": {
        "model": "fast_itpn_tiny_patch16_224", "model_kwargs": {"depths": list(TINY["depths"])},
        "data_url": imagenet_dir, "img_size": 32, "batch_size": 8, "epochs": 1, "warmup_epochs": 0,
        "num_workers": 0, "progress": False, "output_url": str(tmp_path / "run")}}))
    assert main(["classification", "--config", str(params), "--section", "finetune", "--set", "lr=0.001"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert {row["name"] for row in rows} >= {"top1", "top5"}
    assert json.loads((tmp_path / "run" / "metrics.json").read_text()) == rows

    assert main(["variants", "--checkpoint", str(tmp_path / "run" / "model.safetensors"), "--data-root", imagenet_dir,
                 "--variants", "baseline", "migration_20", "--output", str(tmp_path / "variants"),
                 "--set", "num_workers=0", "progress=false"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert {(row["variant"], row["name"]) for row in rows} == {
        (variant, name) for variant in ("baseline", "migration_20") for name in ("top1", "top5", "images_per_s", "speedup")}
    assert (tmp_path / "variants" / "metrics.json").exists()
