# Timing run: a short Mask R-CNN fine-tune of Fast-iTPN-B at a fixed 1024x1024 input on one GPU, run once
# per acceleration variant (--variant); run_detection records seconds_per_iter (train) beside bbox_mAP,
# and the speed-up of a variant is seconds_per_iter(baseline) / seconds_per_iter(variant).
#   python -m itpn.finetune detection --config configs/detection/mask-rcnn_fast-itpn-base_speed-1024_coco.py \
#       --data-root data/coco --checkpoint runs/pretrain/model.safetensors --variant migration_30_gathering \
#       --work-dir work_dirs/speed-1024/migration_30_gathering
_base_ = ['./mask-rcnn_fast-itpn-base_1x_coco.py']

image_size = (1024, 1024)
max_iters = 300
norm_cfg = dict(type='BN', requires_grad=True)  # one GPU: no SyncBN

model = dict(roi_head=dict(bbox_head=dict(norm_cfg=norm_cfg), mask_head=dict(norm_cfg=norm_cfg)))
train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='LoadAnnotations', with_bbox=True, with_mask=True),
    dict(type='Resize', scale=image_size, keep_ratio=True),
    dict(type='RandomFlip', prob=0.5),
    dict(type='Pad', size=image_size, pad_val=dict(img=(114, 114, 114))),
    dict(type='PackDetInputs'),
]
test_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='Resize', scale=image_size, keep_ratio=True),
    dict(type='Pad', size=image_size, pad_val=dict(img=(114, 114, 114))),
    dict(type='LoadAnnotations', with_bbox=True, with_mask=True),
    dict(type='PackDetInputs', meta_keys=('img_id', 'img_path', 'ori_shape', 'img_shape', 'scale_factor')),
]
train_dataloader = dict(batch_size=2, num_workers=8, sampler=dict(type='InfiniteSampler', shuffle=True),
                        dataset=dict(pipeline=train_pipeline))
val_dataloader = dict(dataset=dict(pipeline=test_pipeline, indices=500))  # the first 500 val images
test_dataloader = val_dataloader
train_cfg = dict(_delete_=True, type='IterBasedTrainLoop', max_iters=max_iters, val_interval=max_iters)
param_scheduler = [dict(type='LinearLR', start_factor=0.001, by_epoch=False, begin=0, end=100)]
default_hooks = dict(checkpoint=dict(by_epoch=False, interval=max_iters))
log_processor = dict(by_epoch=False)
