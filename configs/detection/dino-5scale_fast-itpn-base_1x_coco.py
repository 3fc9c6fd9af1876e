# DINO 1x (12 epochs) on COCO with Fast-iTPN-B, the paper's Table 6 detector. The pyramid's five
# 256-d levels (strides 4..64) go straight into the deformable encoder: neck=None, 5 feature levels.
# AdamW lr 1e-4, weight decay 0.05, layer-wise lr decay 0.90, 8 GPUs x 2 images.
_base_ = ['mmdet::dino/dino-4scale_r50_8xb2-12e_coco.py', '../_base_/itpn_runtime.py', '../_base_/itpn_backbone.py']

itpn_task = 'detection'
itpn_dataset = 'coco'
data_root = 'data/coco/'
num_levels = 5

model = dict(
    data_preprocessor=dict(pad_size_divisor=32),  # the backbone takes sides that are multiples of 16
    backbone={{_base_.itpn_backbone}},
    neck=None,
    num_feature_levels=num_levels,
    encoder=dict(layer_cfg=dict(self_attn_cfg=dict(num_levels=num_levels))),
    decoder=dict(layer_cfg=dict(cross_attn_cfg=dict(num_levels=num_levels))),
)

# ITPNCocoDataset (itpn.mmlab.datasets): mmdet's CocoDataset without the images prepare() listed as skipped.
train_dataloader = dict(dataset=dict(type='ITPNCocoDataset', data_root=data_root))
val_dataloader = dict(dataset=dict(type='ITPNCocoDataset', data_root=data_root))
test_dataloader = val_dataloader
val_evaluator = dict(ann_file=data_root + 'annotations/instances_val2017.json')
test_evaluator = val_evaluator

optim_wrapper = dict(
    _delete_=True,
    type='OptimWrapper',
    constructor='LayerDecayOptimWrapperConstructor',
    paramwise_cfg=dict(layer_decay_rate=0.90),
    optimizer=dict(type='AdamW', lr=1e-4, weight_decay=0.05),
    clip_grad=dict(max_norm=0.1, norm_type=2),
)
