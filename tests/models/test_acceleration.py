"""Token migration and token gathering: exactness against the plain model, replenishing at the
right positions, window attention and its padding, pyramid shapes at the paper's sizes, gradients,
checkpoints without the new parameters, and the named variants."""
from pathlib import Path

import pytest
import timm
import torch
import torch.nn.functional as F

from itpn.models import (
    VARIANTS,
    AccelerationConfig,
    HiViT,
    Stage3Accelerator,
    get_acceleration,
    get_variant,
    load_checkpoint,
    save_safetensors,
    set_acceleration,
)
from itpn.models.fast_itpn import _FAST_ITPN
from itpn.models.hivit import _HIVIT
from itpn.models.token_gathering import WindowLayout
from itpn.models.token_migration import migration_counts, replenish, select_migrated

FIXTURES = Path(__file__).parent / "fixtures"
MICRO = dict(img_size=64, embed_dim=64, depths=(1, 1, 2), num_heads=2)
SIZES = [(224, 224), (512, 512), (800, 1344), (1024, 1024)]


def _micro(family=_FAST_ITPN, seed=0, **kwargs):
    torch.manual_seed(seed)
    return HiViT(**dict(MICRO, **kwargs), **family).eval()


def _stage3_input(model, images):
    """The tokens stage 3 starts from (stem output plus position embedding)."""
    _, _, tokens = model.forward_stem(images)
    return tokens + model.position_embedding(model.check_input(images))


def _install(model, config):
    """Run the accelerated stage 3 even for a config that ``set_acceleration`` would treat as baseline."""
    model.acceleration = Stage3Accelerator(config, model.embed_dim, model.blocks[0].attn.num_heads, len(model.blocks))
    return model


# --- exactness -------------------------------------------------------------------------------------
@pytest.mark.parametrize("family", [_FAST_ITPN, _HIVIT], ids=["fast_itpn", "hivit_rpe"])
def test_migration_ratio_zero_reproduces_the_plain_model(family):
    model = _micro(family, num_classes=5)
    images = torch.randn(2, 3, 64, 96)
    with torch.no_grad():
        plain = model(images)
        _install(model, AccelerationConfig(migration_ratio=0.0))
        accelerated = model(images)
    torch.testing.assert_close(accelerated, plain, rtol=0, atol=1e-6)


def test_baseline_variant_removes_the_accelerator():
    model = _micro(pyramid=True, num_classes=0)
    images = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        plain = model(images)
        set_acceleration(model, "migration_30")
        assert get_acceleration(model).name == "migration_30"
        assert set_acceleration(model, "baseline").is_baseline and model.acceleration is None
        again = model(images)
    for name in plain:
        assert torch.equal(again[name], plain[name])


@pytest.mark.parametrize("family", [_FAST_ITPN, _HIVIT], ids=["fast_itpn", "hivit_rpe"])
@pytest.mark.parametrize("window", [(4, 6), 16], ids=["grid", "larger"])
def test_window_as_large_as_the_grid_is_global_attention(family, window):
    model = _micro(family, num_classes=5)
    images = torch.randn(2, 3, 64, 96)  # a 4 x 6 grid
    with torch.no_grad():
        plain = model(images)
        set_acceleration(model, AccelerationConfig(window_size=window))
        windowed = model(images)
    torch.testing.assert_close(windowed, plain, rtol=0, atol=1e-6)


def test_window_attention_with_padding_equals_blocks_run_window_by_window():
    model = _micro()
    images = torch.randn(2, 3, 80, 112)  # a 5 x 7 grid: 2 x 3 windows of 3 or 2 rows, 3 or 2 columns
    layout = WindowLayout.for_grid((5, 7), (3, 3))
    assert layout.has_padding and layout.num_windows == 6 and layout.window == (3, 3)
    with torch.no_grad():
        tokens = _stage3_input(model, images)
        expected = tokens.clone()
        for window in layout.positions(tokens.device):
            real = window[window < layout.num_positions]
            part = expected[:, real]
            for block in model.blocks:
                part = block(part)
            expected[:, real] = part
        set_acceleration(model, AccelerationConfig(window_size=3))
        windowed = model.forward_stage3(model.forward_stem(images)[2], (5, 7))
    torch.testing.assert_close(windowed, expected, rtol=1e-5, atol=1e-5)


def test_windows_split_any_grid_into_near_equal_windows_no_larger_than_asked():
    # COCO 800 x 1344: 50 x 84 tokens; 16 x 16 windows would need a 64 x 96 padded grid (+46 %)
    layout = WindowLayout.for_grid((50, 84), 16)
    assert layout.windows == (4, 6) and layout.window == (13, 14)
    positions = layout.positions(torch.device("cpu"))
    real = positions[positions < layout.num_positions]
    assert sorted(real.tolist()) == list(range(50 * 84))  # every token in exactly one window
    rows, cols = positions // 84, positions % 84
    per_window = [(int(r[p < 4200].unique().numel()), int(c[p < 4200].unique().numel()))
                  for r, c, p in zip(rows, cols, positions)]
    assert {height for height, _ in per_window} == {12, 13} and {width for _, width in per_window} == {14}
    assert layout.num_slots / layout.num_positions == pytest.approx(52 * 84 / 4200)  # 4.0 % padding
    assert layout.num_slots <= (50 + 4 - 1) * (84 + 6 - 1)  # the stated bound
    for grid in [(64, 64), (32, 32)]:  # 1024^2 and 512^2: whole 16 x 16 windows, no padding
        divided = WindowLayout.for_grid(grid, 16)
        assert divided.window == (16, 16) and not divided.has_padding
    assert WindowLayout.for_grid((14, 14), 16).windows == (1, 1)  # 224^2: one window, global attention


def _changed_windows(variant):
    """Which 2x2-token windows' stage-3 outputs change when only the pixels of window 0 change."""
    model = _micro()
    set_acceleration(model, variant.replace(window_size=2))
    images = torch.randn(1, 3, 64, 64)
    edited = images.clone()
    edited[:, :, :32, :32] = torch.randn(1, 3, 32, 32)
    with torch.no_grad():
        before, after = (model.forward_backbone(x).tokens.reshape(2, 2, 2, 2, -1) for x in (images, edited))
    difference = (before - after).abs().amax(dim=(1, 3, 4))  # per (window row, window column)
    return (difference > 1e-6).flatten().tolist()


def test_window_attention_keeps_windows_apart_and_gathering_tokens_join_them():
    assert _changed_windows(get_variant("window")) == [True, False, False, False]
    assert _changed_windows(get_variant("window_gathering")) == [True, True, True, True]


def test_gathering_costs_n_times_k_not_n_squared(monkeypatch):
    calls = []
    original = F.scaled_dot_product_attention

    def recording(q, k, v, *args, **kwargs):
        calls.append((q.shape[-2], k.shape[-2]))
        return original(q, k, v, *args, **kwargs)

    monkeypatch.setattr(F, "scaled_dot_product_attention", recording)
    model = _micro()
    set_acceleration(model, AccelerationConfig(window_size=2, gathering=True))
    with torch.no_grad():
        model(torch.randn(1, 3, 128, 128))  # 64 tokens, 16 windows of 4
    tokens, windows = 64, 16
    assert len(calls) == 3 * len(model.blocks)
    assert all(queries * keys <= tokens * windows for queries, keys in calls)
    assert {(5, 5), (windows, tokens), (tokens, windows)} == set(calls)


# --- migration and replenishing ------------------------------------------------------------------
def test_select_migrated_drops_the_a_tokens_closest_to_b():
    keys = torch.tensor([[[1.0, 0.0], [1.0, 0.01], [0.0, 1.0], [-1.0, 0.0], [0.6, 0.8], [0.0, -1.0]]])
    keep, drop = select_migrated(keys, None, 1)
    assert drop.tolist() == [[0]]  # A = tokens 0, 2, 4; token 0 is nearly token 1 (in B)
    assert keep.tolist() == [[1, 2, 3, 4, 5]]
    valid = torch.tensor([[True, True, True, True, False, True]])
    keep, drop = select_migrated(keys, valid, 2)
    assert sorted(drop[0].tolist()) == [0, 4]  # the padding token goes first


def test_replenish_puts_every_token_back_at_its_position():
    grid = torch.randn(3, 12, 5)
    order = torch.stack([torch.randperm(12) for _ in range(3)])
    shuffled = torch.gather(grid, 1, order[:, :, None].expand(-1, -1, 5))
    padded_tokens = torch.cat([shuffled, torch.randn(3, 2, 5)], dim=1)
    padded_positions = torch.cat([order, torch.full((3, 2), 12)], dim=1)  # two padding tokens
    assert torch.equal(replenish(padded_tokens, padded_positions, 12), grid)


@pytest.mark.parametrize("window", [None, 2], ids=["global", "windows"])
def test_migrated_tokens_come_back_with_the_state_they_had_when_dropped(window):
    model = _micro(pyramid=True, num_classes=0, depths=(1, 1, 1))  # one stage-3 layer drops the whole share
    set_acceleration(model, AccelerationConfig(migration_ratio=0.25, window_size=window))
    images = torch.randn(3, 3, 64, 96)  # 24 tokens a image
    with torch.no_grad():
        tokens = _stage3_input(model, images)
        out = model.forward_backbone(images).tokens
    # a token dropped in layer 0 keeps its stage-3 input; every other token went through the blocks
    unchanged = (out == tokens).all(dim=-1)
    assert unchanged.sum(dim=1).tolist() == [6, 6, 6]
    if window == 2:  # a quarter of every 2 x 2 window: one token per window
        per_window = unchanged.reshape(3, 2, 2, 3, 2).sum(dim=(2, 4))
        assert (per_window == 1).all()
    assert len({tuple(row.nonzero().flatten().tolist()) for row in unchanged}) > 1, "images drop different tokens"


def test_each_image_migrates_the_same_tokens_alone_or_in_a_batch():
    model = _micro()
    set_acceleration(model, "migration_40")
    images = torch.randn(3, 3, 64, 64)
    with torch.no_grad():
        batched = model(images)
        single = torch.cat([model(image[None]) for image in images])
    torch.testing.assert_close(batched, single, rtol=1e-5, atol=1e-5)


def test_migration_counts_follow_the_schedule():
    per_layer = migration_counts(256, 24, ratio=0.3)  # 16 x 16 window, Fast-iTPN-B's 24 layers
    assert sorted(per_layer) == list(range(24)) and set(per_layer.values()) == {3, 4}
    assert sum(per_layer.values()) == round(0.3 * 256)
    assert migration_counts(256, 24, ratio=0.3, schedule="front_loaded") == {0: 26, 1: 25, 2: 26}
    assert migration_counts(256, 24, r=3) == dict.fromkeys(range(24), 3)  # the paper's knob: r per layer
    assert migration_counts(16, 4, r=4) == {0: 4, 1: 4, 2: 4, 3: 2}  # never more than half of what is left
    assert migration_counts(100, 2, ratio=0.0) == {}
    with pytest.raises(ValueError, match="more than set A holds"):
        migration_counts(100, 1, ratio=0.6)
    with pytest.raises(ValueError, match="migration schedule must be one of"):
        migration_counts(100, 2, ratio=0.3, schedule="late")


@pytest.mark.parametrize("config, expected", [
    (AccelerationConfig(migration_r=2), {0: 2, 1: 2, 2: 2, 3: 2}),
    (AccelerationConfig(migration_ratio=0.3), {0: 2, 1: 2, 2: 1, 3: 2}),  # 7 of 24 tokens over 4 layers
    (AccelerationConfig(migration_ratio=0.3, migration_schedule="front_loaded"), {0: 2, 1: 3, 2: 2}),
], ids=["r", "ratio", "front_loaded"])
def test_each_layer_drops_its_count_and_every_position_is_replenished(config, expected):
    model = _micro(depths=(1, 1, 4))
    set_acceleration(model, config)
    images = torch.randn(2, 3, 64, 96)  # 24 tokens, global attention
    inputs = []
    hooks = [block.norm1.register_forward_pre_hook(lambda module, args: inputs.append(args[0]))
             for block in model.blocks]
    with torch.no_grad():
        out = model.forward_backbone(images)
    for hook in hooks:
        hook.remove()
    assert config.migration_counts((4, 6), 4) == expected
    assert [x.shape[1] for x in inputs] == [24 - sum(expected.get(j, 0) for j in range(i)) for i in range(4)]
    # a token that left in layer l comes back with its layer-l input; the rest went through every block
    for image in range(2):
        rows = out.tokens[image]
        left_in = [sum(int((rows[:, None] == x[image][None]).all(-1).any(-1)[p]) for p in range(24)) for x in inputs]
        assert left_in == [expected.get(layer, 0) for layer in range(4)]
        assert int(out.stayed[image].sum()) == 24 - sum(expected.values())
        assert not (rows == 0).all(-1).any()  # every position written back
    assert "of 24 tokens" in config.describe_migration((4, 6), 4)


# --- every variant, every size -------------------------------------------------------------------
@pytest.mark.parametrize("size", SIZES, ids=lambda s: f"{s[0]}x{s[1]}")
def test_pyramid_levels_keep_their_shapes_under_every_variant(size):
    with torch.device("meta"):
        # Fast-iTPN-B's widths; three stage-3 blocks are enough for all three migration layers
        model = timm.create_model("fast_itpn_base_patch16_224", pyramid=True, pyramid_extra_levels=2, depths=(1, 1, 3))
        images = torch.empty(2, 3, *size)
        expected = {name: tuple(level.shape) for name, level in model(images).items()}
        for name in VARIANTS:
            set_acceleration(model, name)
            shapes = {level_name: tuple(level.shape) for level_name, level in model(images).items()}
            assert shapes == expected, name
    height, width = size
    assert expected["s4"] == (2, 256, height // 4, width // 4) and expected["s64"] == (2, 256, height // 64,
                                                                                       width // 64)


@pytest.mark.parametrize("name", list(VARIANTS))
def test_every_variant_classifies_a_padded_non_square_batch(name):
    model = _micro(_HIVIT, num_classes=3)
    config = get_variant(name)
    set_acceleration(model, config.replace(window_size=3) if config.window_size else config)  # 5 x 7 grid: padded
    with torch.no_grad():
        logits = model(torch.randn(2, 3, 80, 112))
    assert logits.shape == (2, 3) and torch.isfinite(logits).all()


# --- training ------------------------------------------------------------------------------------
@pytest.mark.parametrize("variant", ["window", "window_gathering"])
def test_stochastic_depth_keeps_or_drops_a_block_for_all_windows_of_an_image(variant):
    """timm's DropPath on (B*K, n, C) windows draws per window; one image must draw once per block."""
    model = _micro(depths=(1, 1, 6), drop_path_rate=0.5).train()
    for block in model.blocks:
        block.drop_path.drop_prob = 0.5
    set_acceleration(model, get_variant(variant).replace(window_size=2))  # 4 x 4 grid: 4 windows
    slots = 4 + (variant == "window_gathering")  # with the window's gathering token
    before_attention, before_mlp = [], []

    def record(into):
        def hook(module, args):
            if args[0].shape[:2] == (4, slots):  # the windows, not the gathering tokens' own projections
                into.append(args[0].detach())
        return hook

    for block in model.blocks:
        block.norm1.register_forward_pre_hook(record(before_attention))
        block.norm2.register_forward_pre_hook(record(before_mlp))
    torch.manual_seed(3)
    model(torch.randn(1, 3, 64, 64))
    kept = []
    updates = [(a, m) for a, m in zip(before_attention, before_mlp)]  # attention branch of each block
    updates += list(zip(before_mlp[:-1], before_attention[1:]))  # MLP branch of all but the last block
    for start, end in updates:
        changed = ((end - start).abs().amax(dim=(1, 2)) > 0).tolist()  # per window
        assert len(set(changed)) == 1, f"one image's windows disagree: {changed}"
        kept.append(changed[0])
    assert set(kept) == {True, False}  # both outcomes were drawn


def test_window_bias_shared_by_the_batch_is_broadcast_not_copied(monkeypatch):
    shapes = []
    original = F.scaled_dot_product_attention

    def recording(q, k, v, attn_mask=None, **kwargs):
        shapes.append((tuple(q.shape), None if attn_mask is None else tuple(attn_mask.shape)))
        return original(q, k, v, attn_mask=attn_mask, **kwargs)

    model = _micro()
    set_acceleration(model, get_variant("window_hrpe").replace(window_size=2))
    for layer in model.acceleration.layers:
        torch.nn.init.normal_(layer.window_bias_table)
    images = torch.randn(3, 3, 64, 64)
    with torch.no_grad():
        single = torch.cat([model(image[None]) for image in images])
        monkeypatch.setattr(F, "scaled_dot_product_attention", recording)
        batched = model(images)
    torch.testing.assert_close(batched, single, rtol=1e-5, atol=1e-5)
    heads = model.blocks[0].attn.num_heads
    assert shapes == [((3, 4 * heads, 4, 32), (1, 4 * heads, 4, 4))] * len(model.blocks)  # one bias for 3 images


def test_classifier_pools_the_tokens_that_stayed_or_the_whole_grid():
    model = _micro(num_classes=3, depths=(1, 1, 1))
    set_acceleration(model, "migration_40")
    images = torch.randn(2, 3, 64, 96)
    with torch.no_grad():
        out = model.forward_backbone(images)
        assert out.stayed.sum(dim=1).tolist() == [24 - 10, 24 - 10]  # round(0.4 * 24) tokens left
        tokens = model.norm(out.tokens)
        stayed = torch.stack([tokens[i][out.stayed[i]].mean(dim=0) for i in range(2)])
        assert model.global_pool == "avg"  # the default: it measured better (README, Performance)
        torch.testing.assert_close(model(images), model.head(model.fc_norm(tokens.mean(dim=1))))
        model.reset_classifier(3, global_pool="avg_stayed")
        torch.testing.assert_close(model(images), model.head(model.fc_norm(stayed)))
        set_acceleration(model, "baseline")
        assert model.forward_backbone(images).stayed is None
    with pytest.raises(ValueError, match="global_pool must be one of"):
        model.reset_classifier(3, global_pool="max")


def test_fine_tuning_with_acceleration_trains_every_new_parameter():
    model = _micro(num_classes=4).train()
    set_acceleration(model, get_variant("migration_30_gathering").replace(window_size=2, position_bias="rpe"))
    images, labels = torch.randn(8, 3, 64, 64), torch.arange(8) % 4
    optimizer = torch.optim.AdamW(model.parameters(), lr=2e-3)
    losses = []
    for _ in range(12):
        loss = F.cross_entropy(model(images), labels)
        optimizer.zero_grad()
        loss.backward()
        if len(losses) == 1:  # once the read-back gates have left zero, every new parameter has a gradient
            new = {name: p.grad for name, p in model.named_parameters() if name.startswith("acceleration.")}
            assert {name.split(".")[-1] for name in new} == {"embedding", "window_bias_table", "cross_bias_table",
                                                               "readback_gate"}
            assert all(grad is not None and grad.abs().sum() > 0 for grad in new.values()), new.keys()
            assert all(p.grad is not None for name, p in model.named_parameters() if name.startswith("blocks."))
        optimizer.step()
        losses.append(loss.item())
    assert losses[-1] < 0.5 * losses[0]


def test_masked_pretraining_forward_is_refused_while_accelerated():
    model = _micro()
    set_acceleration(model, "migration_20")
    with pytest.raises(ValueError, match="set_acceleration\\(model, 'baseline'\\)"):
        model.forward_backbone(torch.randn(1, 3, 64, 64), ids_keep=torch.tensor([[0, 3]]))


# --- checkpoints and switching -------------------------------------------------------------------
def test_released_checkpoint_loads_into_an_accelerated_model():
    model = _micro(num_classes=10)
    set_acceleration(model, get_variant("window_gathering_rpe").replace(window_size=2))
    report = load_checkpoint(model, str(FIXTURES / "released_fast_itpn_micro.pth"))
    assert report.initialised and all(key.startswith("acceleration.") for key in report.initialised)
    fixture = torch.load(FIXTURES / "released_fast_itpn_micro.pth", weights_only=True)
    with torch.no_grad():
        logits = model(fixture["input"])
    assert logits.shape == fixture["logits"].shape and torch.isfinite(logits).all()


def test_fine_tuned_acceleration_parameters_round_trip_and_are_dropped_by_a_plain_model(tmp_path):
    tuned = _micro(num_classes=3)
    set_acceleration(tuned, get_variant("window_gathering_hrpe").replace(window_size=2))
    with torch.no_grad():
        for parameter in tuned.acceleration.parameters():
            parameter.normal_()
    url = str(tmp_path / "tuned.safetensors")
    save_safetensors(tuned.state_dict(), url)

    same = _micro(num_classes=3, seed=1)
    set_acceleration(same, get_variant("window_gathering_hrpe").replace(window_size=2))
    assert not load_checkpoint(same, url).initialised
    assert torch.equal(same.acceleration.gathering.embedding, tuned.acceleration.gathering.embedding)

    plain = _micro(num_classes=3, seed=1)
    report = load_checkpoint(plain, url)
    assert report.dropped and all(key.startswith("acceleration.") for key in report.dropped)
    assert "set_acceleration" in next(iter(report.dropped.values()))


def test_switching_variants_keeps_parameters_they_share():
    model = _micro(num_classes=3)
    set_acceleration(model, get_variant("window_gathering_hrpe").replace(window_size=2))
    with torch.no_grad():
        model.acceleration.gathering.embedding.fill_(0.5)
    set_acceleration(model, get_variant("migration_30_gathering").replace(window_size=2))
    assert torch.equal(model.acceleration.gathering.embedding, torch.full((64,), 0.5))
    assert "acceleration.gathering.embedding" in model.no_weight_decay()


# --- names and errors ----------------------------------------------------------------------------
def test_variants_cover_every_row_of_figure_5_and_table_7():
    assert set(VARIANTS) == {
        "baseline", "migration_10", "migration_20", "migration_30", "migration_40", "window", "window_hrpe",
        "window_gathering", "window_gathering_rpe", "window_gathering_hrpe", "migration_30_gathering",
        "migration_30_front_loaded",  # our earlier schedule, kept by name
    }
    assert get_variant("migration_20").migration_ratio == 0.2 and get_variant("baseline").is_baseline
    assert {name: c.migration_schedule for name, c in VARIANTS.items() if c.migration} == {
        "migration_10": "per_layer", "migration_20": "per_layer", "migration_30": "per_layer",
        "migration_40": "per_layer", "migration_30_gathering": "per_layer", "migration_30_front_loaded": "front_loaded"}
    table7 = {name: (c.gathering, c.position_bias) for name, c in VARIANTS.items() if name.startswith("window")}
    assert table7 == {"window": (False, "none"), "window_hrpe": (False, "hrpe"), "window_gathering": (True, "none"),
                      "window_gathering_rpe": (True, "rpe"), "window_gathering_hrpe": (True, "hrpe")}


def test_unknown_variant_lists_the_valid_names():
    with pytest.raises(ValueError, match="unknown acceleration variant 'migration_50'.*migration_30_gathering"):
        get_variant("migration_50")
    with pytest.raises(ValueError, match="window_gathering_hrpe"):
        set_acceleration(_micro(), "fastest")


@pytest.mark.parametrize("changes, message", [
    (dict(migration_ratio=1.0), "migration_ratio must be in"),
    (dict(gathering=True), "gathering tokens need window attention"),
    (dict(window_size=8, position_bias="rpe"), "use 'hrpe' for window attention alone"),
    (dict(window_size=8, position_bias="abs"), "position_bias must be one of"),
    (dict(window_size=0), "window_size must be positive"),
    (dict(migration_r=2, migration_ratio=0.3), "replaces migration_ratio"),
    (dict(migration_r=0), "at least 1"),
    (dict(migration_ratio=0.3, migration_schedule="late"), "migration_schedule must be one of"),
])
def test_invalid_configs_name_the_problem(changes, message):
    with pytest.raises(ValueError, match=message):
        AccelerationConfig(name="mine", **changes)


def test_only_models_with_a_stage_3_can_be_accelerated():
    with pytest.raises(TypeError, match="no stage 3 to accelerate"):
        set_acceleration(torch.nn.Linear(2, 2), "window")
