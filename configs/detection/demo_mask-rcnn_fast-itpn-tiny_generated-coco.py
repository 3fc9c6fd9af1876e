# CPU demo of the Mask R-CNN 1x config: a shrunken Fast-iTPN-T (depths 1,1,2) on the generated COCO
# stand-in (itpn.data.generate_coco defaults: 160 px, 32 train / 8 val images), 128 px input, 200
# iterations of 2 images. Same detector, pyramid-as-neck and layer-wise lr decay as the full config; for a CPU
# the 4conv1fc box head becomes 2fc, the heads are narrower, fewer RoIs are sampled and BN replaces SyncBN.
#   python -m itpn.finetune detection --config configs/detection/demo_mask-rcnn_fast-itpn-tiny_generated-coco.py \
#       --data-root <generated coco> --checkpoint <pre-training export>
_base_ = ['./mask-rcnn_fast-itpn-base_1x_coco.py']

data_root = 'data/generated/coco/'
image_scale = (128, 128)
max_iters = 200
norm_cfg = dict(type='BN', requires_grad=True)

model = dict(
    backbone=dict(model_name='fast_itpn_tiny_patch16_224', model_kwargs=dict(depths=(1, 1, 2)), drop_path_rate=0.0),
    roi_head=dict(
        bbox_head=dict(_delete_=True, type='Shared2FCBBoxHead', in_channels=256, fc_out_channels=256,
                       roi_feat_size=7, num_classes=80,
                       bbox_coder=dict(type='DeltaXYWHBBoxCoder', target_means=[0.0, 0.0, 0.0, 0.0],
                                       target_stds=[0.1, 0.1, 0.2, 0.2]),
                       reg_class_agnostic=False, reg_decoded_bbox=True,
                       loss_cls=dict(type='CrossEntropyLoss', use_sigmoid=False, loss_weight=1.0),
                       loss_bbox=dict(type='GIoULoss', loss_weight=10.0)),
        mask_head=dict(num_convs=2, conv_out_channels=64, norm_cfg=norm_cfg)),
    train_cfg=dict(rpn_proposal=dict(nms_pre=500, max_per_img=300), rcnn=dict(sampler=dict(num=128))),
    test_cfg=dict(rpn=dict(nms_pre=500, max_per_img=300), rcnn=dict(score_thr=0.001)),
)

train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='LoadAnnotations', with_bbox=True, with_mask=True),
    dict(type='Resize', scale=image_scale, keep_ratio=True),
    dict(type='RandomFlip', prob=0.5),
    dict(type='PackDetInputs'),
]
test_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='Resize', scale=image_scale, keep_ratio=True),
    dict(type='LoadAnnotations', with_bbox=True, with_mask=True),
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

optim_wrapper = dict(optimizer=dict(lr=1e-3))
train_cfg = dict(_delete_=True, type='IterBasedTrainLoop', max_iters=max_iters, val_interval=max_iters)
param_scheduler = [
    dict(type='LinearLR', start_factor=0.01, by_epoch=False, begin=0, end=20),
    dict(type='MultiStepLR', begin=0, end=max_iters, by_epoch=False, milestones=[int(max_iters * 0.8)], gamma=0.1),
]
default_hooks = dict(logger=dict(interval=10), checkpoint=dict(by_epoch=False, interval=max_iters))
log_processor = dict(by_epoch=False)
