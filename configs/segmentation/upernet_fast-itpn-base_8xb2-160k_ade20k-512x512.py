# UPerNet on ADE20K with Fast-iTPN-B, as the released iTPN segmentation code: each pyramid level
# concatenated with the backbone feature of its stride (channels 384/512/768/768 for B), UPerHead
# with 768 channels, 512x512 crops, 160k iterations at 8 GPUs x 2 images, AdamW lr 3e-5 with layer-wise
# decay 0.90, poly schedule after 1500 warm-up iterations, sliding-window test (stride 341).
# Self-contained (no mmseg:: bases): mmengine resolves mmseg:: through the distribution name
# "mmsegmentation", which the maintained fork (onedl-mmsegmentation) does not have.
_base_ = ['../_base_/itpn_runtime.py']
default_scope = 'mmseg'

itpn_task = 'segmentation'
itpn_dataset = 'ade20k'
data_root = 'data/ade/ADEChallengeData2016'
crop_size = (512, 512)
norm_cfg = dict(type='SyncBN', requires_grad=True)
in_channels = [384, 512, 768, 768]

model = dict(
    type='EncoderDecoder',
    data_preprocessor=dict(type='SegDataPreProcessor', size=crop_size, mean=[123.675, 116.28, 103.53],
                           std=[58.395, 57.12, 57.375], bgr_to_rgb=True, pad_val=0, seg_pad_val=255,
                           test_cfg=dict(size_divisor=32)),  # the backbone takes sides that are multiples of 16
    backbone=dict(
        type='ITPNBackbone',
        model_name='fast_itpn_base_patch16_224',
        img_size=512,  # the crop's grid: the checkpoint's position embedding is resampled once, at load
        out='pyramid+backbone',
        pyramid_extra_levels=0,
        fpn_dim=256,
        fpn_depth=1,  # as the pre-training export (the released pixel-pretrained iTPN used 2)
        drop_path_rate=0.1,
        acceleration='baseline',  # an itpn.models.acceleration variant
        checkpoint=None,  # the pre-training export (model.safetensors)
    ),
    decode_head=dict(
        type='UPerHead', in_channels=in_channels, in_index=[0, 1, 2, 3], pool_scales=(1, 2, 3, 6), channels=768,
        dropout_ratio=0.1, num_classes=150, norm_cfg=norm_cfg, align_corners=False,
        loss_decode=dict(type='CrossEntropyLoss', use_sigmoid=False, loss_weight=1.0)),
    auxiliary_head=dict(
        type='FCNHead', in_channels=in_channels[2], in_index=2, channels=256, num_convs=1, concat_input=False,
        dropout_ratio=0.1, num_classes=150, norm_cfg=norm_cfg, align_corners=False,
        loss_decode=dict(type='CrossEntropyLoss', use_sigmoid=False, loss_weight=0.4)),
    train_cfg=dict(),
    test_cfg=dict(mode='slide', crop_size=crop_size, stride=(341, 341)),
)

dataset_type = 'ITPNADE20KDataset'  # itpn.mmlab.datasets: mmseg's ADE20KDataset without what prepare() skipped
train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='LoadAnnotations', reduce_zero_label=True),
    dict(type='RandomResize', scale=(2048, 512), ratio_range=(0.5, 2.0), keep_ratio=True),
    dict(type='RandomCrop', crop_size=crop_size, cat_max_ratio=0.75),
    dict(type='RandomFlip', prob=0.5),
    dict(type='PhotoMetricDistortion'),
    dict(type='PackSegInputs'),
]
test_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='Resize', scale=(2048, 512), keep_ratio=True),
    dict(type='LoadAnnotations', reduce_zero_label=True),  # after Resize: the metric uses the original mask
    dict(type='PackSegInputs'),
]
train_dataloader = dict(
    batch_size=2, num_workers=4, persistent_workers=True, sampler=dict(type='InfiniteSampler', shuffle=True),
    dataset=dict(type=dataset_type, data_root=data_root, pipeline=train_pipeline,
                 data_prefix=dict(img_path='images/training', seg_map_path='annotations/training')))
val_dataloader = dict(
    batch_size=1, num_workers=4, persistent_workers=True, sampler=dict(type='DefaultSampler', shuffle=False),
    dataset=dict(type=dataset_type, data_root=data_root, pipeline=test_pipeline,
                 data_prefix=dict(img_path='images/validation', seg_map_path='annotations/validation')))
test_dataloader = val_dataloader
val_evaluator = dict(type='IoUMetric', iou_metrics=['mIoU'])
test_evaluator = val_evaluator

max_iters = 160000
train_cfg = dict(type='IterBasedTrainLoop', max_iters=max_iters, val_interval=16000)
val_cfg = dict(type='ValLoop')
test_cfg = dict(type='TestLoop')
default_hooks = dict(
    timer=dict(type='IterTimerHook'),
    logger=dict(type='LoggerHook', interval=50, log_metric_by_epoch=False),
    param_scheduler=dict(type='ParamSchedulerHook'),
    checkpoint=dict(type='CheckpointHook', by_epoch=False, interval=16000),
    sampler_seed=dict(type='DistSamplerSeedHook'),
    visualization=dict(type='SegVisualizationHook'))
env_cfg = dict(cudnn_benchmark=True, mp_cfg=dict(mp_start_method='fork', opencv_num_threads=0),
               dist_cfg=dict(backend='nccl'))
vis_backends = [dict(type='LocalVisBackend')]
visualizer = dict(type='SegLocalVisualizer', vis_backends=vis_backends, name='visualizer')
log_processor = dict(by_epoch=False)
log_level = 'INFO'
load_from = None
resume = False

optim_wrapper = dict(
    type='OptimWrapper',
    constructor='LayerDecayOptimWrapperConstructor',
    paramwise_cfg=dict(layer_decay_rate=0.90),
    optimizer=dict(type='AdamW', lr=3e-5, betas=(0.9, 0.999), weight_decay=0.05),
)
param_scheduler = [
    dict(type='LinearLR', start_factor=1e-6, by_epoch=False, begin=0, end=1500),
    dict(type='PolyLR', eta_min=0.0, power=1.0, begin=1500, end=max_iters, by_epoch=False),
]
