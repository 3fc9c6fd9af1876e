"""``itpn reproduce --scale paper`` runs the paper's models and recipes, table by table (issue 19)."""
from flows.reproduce import plan


def _configs(jobs, stage):
    return {tuple(job.rows): job.params for job in jobs if job.stage == stage}


def test_tables_8_and_9_pretrain_itpn_b_on_pixels_for_400_epochs_and_fine_tune_as_itpn(tmp_path):
    jobs = plan("table9", "paper", data_root="/data/real", output_dir=str(tmp_path / "t9"))
    pretrainings = _configs(jobs, "pretrain")
    mim_mfm = pretrainings[("mim_mfm",)].pretrain_config()
    assert (mim_mfm.model, mim_mfm.recipe, mim_mfm.epochs, mim_mfm.teacher, mim_mfm.mfm_targets) == (
        "itpn_base_patch16_224", "itpn_pixel", 400, "ema", "visible")
    assert (mim_mfm.pos_embed_init, mim_mfm.drop_path, mim_mfm.clip_grad, mim_mfm.betas) == (
        "sincos", 0.0, None, (0.9, 0.95))
    assert mim_mfm.model_kwargs == {"fpn_depth": 2, "rpe": False}
    conv = pretrainings[("conv",)].pretrain_config()
    assert conv.model_kwargs == {"fpn_depth": 2, "rpe": False, "cmlp": False} and conv.teacher == "none"
    finetune = _configs(jobs, "finetune_classification")[("mim_mfm",)].classification_config(None)
    assert (finetune.recipe, finetune.lr, finetune.epochs, finetune.layer_decay, finetune.layer_decay_rule) == (
        "itpn", 5e-4, 100, 0.65, "itpn")
    table8 = _configs(plan("table8", "paper", data_root="/data/real", output_dir=str(tmp_path / "t8")), "pretrain")
    no_ipt = table8[("no_ipt",)].pretrain_config()
    assert (no_ipt.model, no_ipt.integral, no_ipt.epochs) == ("itpn_base_patch16_224", False, 400)


def test_table7_and_figure5_pretrain_fast_itpn_b_with_clip_l(tmp_path):
    for table in ("table7", "figure5"):
        jobs = plan(table, "paper", data_root="/data/real", output_dir=str(tmp_path / table))
        (pretraining,) = _configs(jobs, "pretrain").values()
        config = pretraining.pretrain_config()
        assert (config.model, config.recipe, config.teacher, config.clip_model, config.feature_loss, config.epochs) == (
            "fast_itpn_base_patch16_224", "fast_itpn_clip_l", "clip", "ViT-L-14-quickgelu", "cosine", 1600)
        assert pretraining.experiment.model == "fast_itpn_base_patch16_224"
