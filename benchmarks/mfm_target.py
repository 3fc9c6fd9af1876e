"""Is the EMA-teacher MFM target trivial? MFM targets at the visible units against the masked units.

    python benchmarks/mfm_target.py                      # the reproduce demo's scale: 6 runs of ~5 min, CPU
    python benchmarks/mfm_target.py --steps 300 --seeds 0 1 2

Two measurements, side by side for ``teacher="none"`` (MIM alone), ``mfm_targets="visible"`` and
``mfm_targets="masked"`` (``itpn.pretrain.objective`` explains both):

1. **Triviality.** After pre-training, on held images: the MFM loss (MSE against layer-normalised
   teacher features; predicting zero scores 1.0) of the real heads, and of a *lateral-only* head: a
   linear least-squares map (fitted on half the units, scored on the other half) from the student's
   own stage feature at the same units (stage-1 sub-tokens for stride 4, stage-2 for 8, stage-3
   tokens for 16). When the lateral-only head scores as well as the real one the target is a near
   copy of what the student already has; at masked units the student has no feature of its own,
   so the column is the copy a student that saw the unit could make.
2. **Fine-tuning.** Top-1 on the generated ImageNet stand-in's validation split after fine-tuning
   each export as ``configs/reproduce/demo.yaml`` does: pre-training reads 100 unlabelled images per
   class, the fine-tune ``--labels-per-class`` of them (5), for ``--epochs`` (30).

Prints a markdown table and writes ``<out>/mfm_target.json``.
"""
from __future__ import annotations

import argparse
import json
import statistics
from pathlib import Path

import torch
from rich.console import Console
from rich.table import Table
from rich import box

from itpn.data.prepare import prepare
from itpn.finetune import run_classification
from itpn.models.layers import gather_units
from itpn.pretrain import PretrainConfig, Trainer
from itpn.pretrain.objective import LEVEL_NAMES, standardize

VARIANTS = {"mim_only": dict(teacher="none"), "mfm_visible": dict(teacher="ema", mfm_targets="visible"),
            "mfm_masked": dict(teacher="ema", mfm_targets="masked")}
DEMO_PRETRAIN = dict(model="fast_itpn_tiny_patch16_224", model_kwargs={"depths": [1, 1, 4]}, img_size=64, batch_size=16,
                     lr=2e-4, decoder_dim=128, decoder_depth=2, decoder_heads=4, num_workers=0,
                     amp_dtype="fp32", device="cpu", progress=False)
DEMO_FINETUNE = dict(model="fast_itpn_tiny_patch16_224", model_kwargs={"depths": [1, 1, 4]}, img_size=64, batch_size=32,
                     warmup_epochs=1, lr=1e-3, num_workers=0, model_ema=False, device="cpu", progress=False)


def lateral_fit(inputs: torch.Tensor, targets: torch.Tensor, ridge: float = 1e-3) -> float:
    """Held-out MSE of the ridge-regularised least-squares affine map ``inputs (n, a) -> targets (n, b)``,
    fitted on the even rows and scored on the odd ones (``ridge`` x the mean feature energy)."""
    design = torch.cat([inputs, torch.ones(len(inputs), 1)], dim=1).double()
    targets = targets.double()
    fit, score = design[0::2], design[1::2]
    gram = fit.T @ fit
    gram += ridge * gram.diagonal().mean() * torch.eye(len(gram), dtype=gram.dtype)
    solution = torch.linalg.solve(gram, fit.T @ targets[0::2])
    return float((score @ solution - targets[1::2]).pow(2).mean())


@torch.no_grad()
def triviality(trainer: Trainer, images: torch.Tensor, seed: int) -> dict[str, float]:
    """Real-head MFM loss and lateral-only MSE per level on ``images`` (B, 3, H, W) in [0, 1]."""
    objective, teacher = trainer.objective.eval(), trainer.ema_teacher
    mask = trainer.masks(len(images), torch.Generator().manual_seed(seed))
    losses = objective(images, mask, teacher(images, mask))
    units = mask.ids_masked if objective.mfm_targets == "masked" else mask.ids_keep
    from itpn.pretrain.objective import normalize
    from timm.data import IMAGENET_DEFAULT_MEAN, IMAGENET_DEFAULT_STD

    student = objective.encoder.forward_backbone(normalize(images, IMAGENET_DEFAULT_MEAN, IMAGENET_DEFAULT_STD), units)
    targets = teacher(images, mask).stages
    own = [student.tokens, student.stage2, student.stage1]
    row = {}
    for name, mine, target in zip(LEVEL_NAMES, own, targets):
        row[f"head_{name}"] = float(losses[f"mfm_{name}"])
        row[f"lateral_{name}"] = lateral_fit(mine.reshape(-1, mine.shape[-1]).float(),
                                             standardize(target).reshape(-1, target.shape[-1]))
    return row


def run(args: argparse.Namespace) -> list[dict]:
    out = Path(args.out)
    data_url = str(out / "imagenet")
    prepare("imagenet", data_url, generate=True, seed=0, num_classes=10, train_per_class=100, val_per_class=20,
            image_size=64)
    rows = []
    for seed in args.seeds:
        for name in args.variants:
            variant = VARIANTS[name]
            run_dir = out / f"{name}_seed{seed}"
            config = PretrainConfig.from_dict({**DEMO_PRETRAIN, **variant, "total_steps": args.steps, "seed": seed,
                                               "lr": args.lr, "warmup_steps": max(1, args.steps // 10),
                                               "data_url": data_url, "output_url": str(run_dir / "pretrain"),
                                               "checkpoint_every": args.steps})
            trainer = Trainer(config)
            result = trainer.fit()
            metrics = [json.loads(line) for line in Path(result.metrics_url).read_text().splitlines()]
            row = {"variant": name, "seed": seed, "steps": args.steps, "final_mim": metrics[-1]["mim"]}
            if trainer.ema_teacher is not None:
                held = torch.stack([trainer.data[(index, seed + 7)][0] for index in range(min(args.held, len(trainer.data)))])
                row.update(triviality(trainer, held, seed + 1000))
            fine = run_classification({**DEMO_FINETUNE, "epochs": args.epochs, "seed": seed, "data_url": data_url,
                                       "labels_per_class": args.labels_per_class,
                                       "pretrained": result.export_url, "output_url": str(run_dir / "finetune")})
            top1 = [m["value"] for m in fine.metrics if m["name"] == "top1" and m.get("split", "val") == "val"]
            row["top1"] = top1[-1]
            rows.append(row)
            print(json.dumps(row), flush=True)
    return rows


def summarise(rows: list[dict]) -> Table:
    table = Table(box=box.MARKDOWN)
    columns = ["variant", "top1 (mean over seeds)", "final MIM"] + [f"{kind} {name}" for name in LEVEL_NAMES
                                                                     for kind in ("head", "lateral")]
    for column in columns:
        table.add_column(column)
    for name in VARIANTS:
        mine = [row for row in rows if row["variant"] == name]
        if not mine:
            continue
        seeds = ", ".join(f"{r['top1']:.1f}" for r in mine)
        cells = [name, f"{statistics.mean(r['top1'] for r in mine):.1f} ({seeds})",
                 f"{statistics.mean(r['final_mim'] for r in mine):.3f}"]
        for level in LEVEL_NAMES:
            for kind in ("head", "lateral"):
                key = f"{kind}_{level}"
                cells.append(f"{statistics.mean(r[key] for r in mine):.3f}" if key in mine[0] else "-")
        table.add_row(*cells)
    return table


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", default="outputs/benchmarks/mfm_target")
    parser.add_argument("--steps", type=int, default=1000, help="pre-training updates per run")
    parser.add_argument("--lr", type=float, default=DEMO_PRETRAIN["lr"],
                        help="pre-training lr (batch 16; the demo's 2e-4; 1e-3 made MIM alone hurt, issue 11 item 8)")
    parser.add_argument("--epochs", type=int, default=30, help="fine-tuning epochs per run")
    parser.add_argument("--labels-per-class", type=int, default=5, help="labelled images per class fine-tuned on")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    parser.add_argument("--variants", nargs="+", choices=list(VARIANTS), default=list(VARIANTS))
    parser.add_argument("--held", type=int, default=192, help="images the MFM losses are measured on")
    args = parser.parse_args()
    torch.set_num_threads(1)
    rows = run(args)
    Console(width=200).print(summarise(rows))
    path = Path(args.out) / "mfm_target.json"
    path.write_text(json.dumps({"arguments": vars(args), "rows": rows}, indent=2))
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
