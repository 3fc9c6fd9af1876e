# CPU demo of the DINO 1x config: a shrunken Fast-iTPN-T (depths 1,1,2) on the generated COCO stand-in,
# 128 px input; a 2-layer encoder and decoder with 100 queries instead of 6 / 900 so that it runs in
# minutes. DINO needs far longer than a demo to converge: the demo shows it trains and evaluates.
_base_ = ['./dino-5scale_fast-itpn-base_1x_coco.py']

data_root = 'data/generated/coco/'
image_scale = (128, 128)
max_iters = 100
num_layers = 2

model = dict(
    num_queries=100,
    backbone=dict(model_name='fast_itpn_tiny_patch16_224', model_kwargs=dict(depths=(1, 1, 2)), drop_path_rate=0.0),
    encoder=dict(num_layers=num_layers),
    decoder=dict(num_layers=num_layers),
    dn_cfg=dict(group_cfg=dict(num_dn_queries=20)),
    test_cfg=dict(max_per_img=100),
)

train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='LoadAnnotations', with_bbox=True),
    dict(type='Resize', scale=image_scale, keep_ratio=True),
    dict(type='RandomFlip', prob=0.5),
    dict(type='PackDetInputs'),
]
test_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='Resize', scale=image_scale, keep_ratio=True),
    dict(type='LoadAnnotations', with_bbox=True),
    dict(type='PackDetInputs', meta_keys=('img_id', 'img_path', 'ori_shape', 'img_shape', 'scale_factor')),
]
train_dataloader = dict(
    batch_size=2, num_workers=0, persistent_workers=False, sampler=dict(type='InfiniteSampler', shuffle=True),
    dataset=dict(data_root=data_root, pipeline=train_pipeline))
val_dataloader = dict(
    batch_size=2, num_workers=0, persistent_workers=False,
    dataset=dict(data_root=data_root, pipeline=test_pipeline))
test_dataloader = val_dataloader
val_evaluator = dict(ann_file=data_root + 'annotations/instances_val2017.json')
test_evaluator = val_evaluator

optim_wrapper = dict(optimizer=dict(lr=2e-4))
train_cfg = dict(_delete_=True, type='IterBasedTrainLoop', max_iters=max_iters, val_interval=max_iters)
param_scheduler = [dict(type='LinearLR', start_factor=0.01, by_epoch=False, begin=0, end=10)]
default_hooks = dict(logger=dict(interval=10), checkpoint=dict(by_epoch=False, interval=max_iters))
log_processor = dict(by_epoch=False)
