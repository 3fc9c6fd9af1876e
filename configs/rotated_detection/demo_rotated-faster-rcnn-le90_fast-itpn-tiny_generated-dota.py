# CPU demo of the rotated Faster R-CNN config: a shrunken Fast-iTPN-T (depths 1,1,2) on a small generated
# DOTA stand-in, e.g. itpn.data.generate_dota(url, image_size=384, objects_per_image=(8, 16)):
# images are cut into 128 px patches overlapping by 32 px, the detector trains on the train patches and
# DOTA's mAP is computed on the full val images after merging the patch detections. For a CPU the box head
# is narrower (256-d) and fewer proposals and RoIs are used.
_base_ = ['./rotated-faster-rcnn-le90_fast-itpn-base_1x_dota.py']

itpn_dota_source = 'data/generated/dota/'
itpn_dota_split = dict(patch_size=128, gap=32)
image_scale = (128, 128)
max_iters = 300

model = dict(
    backbone=dict(model_name='fast_itpn_tiny_patch16_224', model_kwargs=dict(depths=(1, 1, 2)), drop_path_rate=0.0),
    roi_head=dict(bbox_head=dict(fc_out_channels=256)),
    train_cfg=dict(rpn_proposal=dict(nms_pre=500, max_per_img=300), rcnn=dict(sampler=dict(num=128))),
    test_cfg=dict(rpn=dict(nms_pre=500, max_per_img=300), rcnn=dict(score_thr=0.001, max_per_img=100)),
)

train_pipeline = [
    dict(type='mmdet.LoadImageFromFile'),
    dict(type='mmdet.LoadAnnotations', with_bbox=True, box_type='qbox'),
    dict(type='ConvertBoxType', box_type_mapping=dict(gt_bboxes='rbox')),
    dict(type='mmdet.Resize', scale=image_scale, keep_ratio=True),
    dict(type='mmdet.RandomFlip', prob=0.75, direction=['horizontal', 'vertical', 'diagonal']),
    dict(type='mmdet.PackDetInputs'),
]
val_pipeline = [
    dict(type='mmdet.LoadImageFromFile'),
    dict(type='mmdet.Resize', scale=image_scale, keep_ratio=True),
    dict(type='mmdet.LoadAnnotations', with_bbox=True, box_type='qbox'),
    dict(type='ConvertBoxType', box_type_mapping=dict(gt_bboxes='rbox')),
    dict(type='mmdet.PackDetInputs', meta_keys=('img_id', 'img_path', 'ori_shape', 'img_shape', 'scale_factor')),
]
train_dataloader = dict(batch_size=2, num_workers=0, persistent_workers=False,
                        sampler=dict(type='InfiniteSampler', shuffle=True), dataset=dict(pipeline=train_pipeline))
val_dataloader = dict(batch_size=2, num_workers=0, persistent_workers=False, dataset=dict(pipeline=val_pipeline))
test_dataloader = val_dataloader

optim_wrapper = dict(optimizer=dict(lr=1e-3))
train_cfg = dict(_delete_=True, type='IterBasedTrainLoop', max_iters=max_iters, val_interval=max_iters)
param_scheduler = [
    dict(type='LinearLR', start_factor=0.01, by_epoch=False, begin=0, end=20),
    dict(type='MultiStepLR', begin=0, end=max_iters, by_epoch=False, milestones=[int(max_iters * 0.8)], gamma=0.1),
]
default_hooks = dict(logger=dict(interval=10), checkpoint=dict(by_epoch=False, interval=max_iters))
log_processor = dict(by_epoch=False)
