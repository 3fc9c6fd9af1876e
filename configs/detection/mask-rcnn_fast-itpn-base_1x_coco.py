# Mask R-CNN 1x on COCO with Fast-iTPN-B: the pre-trained pyramid is the neck (strides 4..64).
# As the released iTPN detection configs: 4conv1fc box head with SyncBN and GIoU loss x10, DETR-style
# multi-scale training, AdamW with layer-wise lr decay 0.90; the paper's lr 3e-4 dropped 10x at
# 3/4 and 11/12 of the 12 epochs. 8 GPUs x 2 images.
_base_ = ['mmdet::mask_rcnn/mask-rcnn_r50_fpn_1x_coco.py', '../_base_/itpn_runtime.py', '../_base_/itpn_backbone.py']

itpn_task = 'detection'
itpn_dataset = 'coco'
data_root = 'data/coco/'

norm_cfg = dict(type='SyncBN', requires_grad=True)
model = dict(
    backbone={{_base_.itpn_backbone}},
    neck=None,
    rpn_head=dict(anchor_generator=dict(strides=[4, 8, 16, 32, 64])),
    roi_head=dict(
        bbox_head=dict(
            _delete_=True,
            type='Shared4Conv1FCBBoxHead',
            conv_out_channels=256,
            norm_cfg=norm_cfg,
            in_channels=256,
            fc_out_channels=1024,
            roi_feat_size=7,
            num_classes=80,
            bbox_coder=dict(type='DeltaXYWHBBoxCoder', target_means=[0.0, 0.0, 0.0, 0.0],
                            target_stds=[0.1, 0.1, 0.2, 0.2]),
            reg_class_agnostic=False,
            reg_decoded_bbox=True,
            loss_cls=dict(type='CrossEntropyLoss', use_sigmoid=False, loss_weight=1.0),
            loss_bbox=dict(type='GIoULoss', loss_weight=10.0)),
        mask_head=dict(norm_cfg=norm_cfg)),
)

backend_args = None
train_pipeline = [
    dict(type='LoadImageFromFile', backend_args=backend_args),
    dict(type='LoadAnnotations', with_bbox=True, with_mask=True),
    dict(type='RandomFlip', prob=0.5),
    dict(
        type='RandomChoice',
        transforms=[
            [dict(type='RandomChoiceResize', keep_ratio=True,
                  scales=[(480, 1333), (512, 1333), (544, 1333), (576, 1333), (608, 1333), (640, 1333),
                          (672, 1333), (704, 1333), (736, 1333), (768, 1333), (800, 1333)])],
            [dict(type='RandomChoiceResize', keep_ratio=True, scales=[(400, 1333), (500, 1333), (600, 1333)]),
             dict(type='RandomCrop', crop_type='absolute_range', crop_size=(384, 600), allow_negative_crop=True),
             dict(type='RandomChoiceResize', keep_ratio=True,
                  scales=[(480, 1333), (512, 1333), (544, 1333), (576, 1333), (608, 1333), (640, 1333),
                          (672, 1333), (704, 1333), (736, 1333), (768, 1333), (800, 1333)])],
        ]),
    dict(type='PackDetInputs'),
]
# ITPNCocoDataset (itpn.mmlab.datasets): mmdet's CocoDataset without the images prepare() listed as skipped.
train_dataloader = dict(batch_size=2, dataset=dict(type='ITPNCocoDataset', data_root=data_root,
                                                   pipeline=train_pipeline))
val_dataloader = dict(dataset=dict(type='ITPNCocoDataset', data_root=data_root))
test_dataloader = val_dataloader
val_evaluator = dict(ann_file=data_root + 'annotations/instances_val2017.json')
test_evaluator = val_evaluator

optim_wrapper = dict(
    _delete_=True,
    type='OptimWrapper',
    constructor='LayerDecayOptimWrapperConstructor',
    paramwise_cfg=dict(layer_decay_rate=0.90),
    optimizer=dict(type='AdamW', lr=3e-4, betas=(0.9, 0.999), weight_decay=0.05),
)
max_epochs = 12
train_cfg = dict(max_epochs=max_epochs)
param_scheduler = [
    dict(type='LinearLR', start_factor=0.001, by_epoch=False, begin=0, end=500),
    dict(type='MultiStepLR', begin=0, end=max_epochs, by_epoch=True, milestones=[9, 11], gamma=0.1),
]
auto_scale_lr = dict(enable=False, base_batch_size=16)
