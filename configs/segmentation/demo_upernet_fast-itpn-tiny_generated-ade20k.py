# CPU demo of the UPerNet config: a shrunken Fast-iTPN-T (depths 1,1,2) on the generated ADE20K stand-in
# (itpn.data.generate_ade20k defaults: 128 px, 24 train / 8 val images, 5 of the 150 classes), 128 px crops,
# sliding-window test, UPerHead with 64 channels, a few hundred iterations; BN for SyncBN.
_base_ = ['./upernet_fast-itpn-base_8xb2-160k_ade20k-512x512.py']

data_root = 'data/generated/ade20k/ADEChallengeData2016'
crop_size = (128, 128)
max_iters = 200
norm_cfg = dict(type='BN', requires_grad=True)

model = dict(
    data_preprocessor=dict(size=crop_size),
    backbone=dict(model_name='fast_itpn_tiny_patch16_224', model_kwargs=dict(depths=(1, 1, 2)), img_size=128,
                  drop_path_rate=0.0),
    # Fast-iTPN-T: embed dim 384 -> pyramid (256) + backbone (96, 192, 384, 384)
    decode_head=dict(in_channels=[352, 448, 640, 640], channels=64, norm_cfg=norm_cfg),
    auxiliary_head=dict(in_channels=640, channels=32, norm_cfg=norm_cfg),
    test_cfg=dict(mode='slide', crop_size=crop_size, stride=(85, 85)),
)

train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='LoadAnnotations', reduce_zero_label=True),
    dict(type='RandomResize', scale=(512, 128), ratio_range=(0.5, 2.0), keep_ratio=True),
    dict(type='RandomCrop', crop_size=crop_size, cat_max_ratio=0.75),
    dict(type='RandomFlip', prob=0.5),
    dict(type='PhotoMetricDistortion'),
    dict(type='PackSegInputs'),
]
test_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='Resize', scale=(512, 128), keep_ratio=True),
    dict(type='LoadAnnotations', reduce_zero_label=True),
    dict(type='PackSegInputs'),
]
train_dataloader = dict(batch_size=4, num_workers=0, persistent_workers=False,
                        dataset=dict(data_root=data_root, pipeline=train_pipeline))
val_dataloader = dict(batch_size=1, num_workers=0, persistent_workers=False,
                      dataset=dict(data_root=data_root, pipeline=test_pipeline))
test_dataloader = val_dataloader

optim_wrapper = dict(optimizer=dict(lr=1e-3))
train_cfg = dict(max_iters=max_iters, val_interval=max_iters)
param_scheduler = [
    dict(type='LinearLR', start_factor=0.01, by_epoch=False, begin=0, end=20),
    dict(type='PolyLR', eta_min=0.0, power=1.0, begin=20, end=max_iters, by_epoch=False),
]
default_hooks = dict(logger=dict(interval=10), checkpoint=dict(by_epoch=False, interval=max_iters),
                     visualization=dict(draw=False))
