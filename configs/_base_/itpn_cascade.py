# Cascade Mask R-CNN pieces (Cai & Vasconcelos), as the released iTPN Cascade config uses them
# (sunsmarterjie/iTPN det/configs/itpn/cascade_pixel_itpn_base_3x.py): three 4conv1fc box heads with SyncBN and
# GIoU loss x10 whose regression targets tighten stage by stage, and mmdet's three R-CNN training stages
# (IoU 0.5 / 0.6 / 0.7, mmdet configs/_base_/models/cascade-mask-rcnn_r50_fpn.py).
itpn_cascade_bbox_heads = [
    dict(type='Shared4Conv1FCBBoxHead', in_channels=256, conv_out_channels=256, fc_out_channels=1024,
         roi_feat_size=7, num_classes=80, norm_cfg=dict(type='SyncBN', requires_grad=True),
         bbox_coder=dict(type='DeltaXYWHBBoxCoder', target_means=[0.0, 0.0, 0.0, 0.0], target_stds=stds),
         reg_class_agnostic=False, reg_decoded_bbox=True,
         loss_cls=dict(type='CrossEntropyLoss', use_sigmoid=False, loss_weight=1.0),
         loss_bbox=dict(type='GIoULoss', loss_weight=10.0))
    for stds in ([0.1, 0.1, 0.2, 0.2], [0.05, 0.05, 0.1, 0.1], [0.033, 0.033, 0.067, 0.067])
]
itpn_cascade_train_rcnn = [
    dict(assigner=dict(type='MaxIoUAssigner', pos_iou_thr=iou, neg_iou_thr=iou, min_pos_iou=iou,
                       match_low_quality=False, ignore_iof_thr=-1),
         sampler=dict(type='RandomSampler', num=512, pos_fraction=0.25, neg_pos_ub=-1, add_gt_as_proposals=True),
         mask_size=28, pos_weight=-1, debug=False)
    for iou in (0.5, 0.6, 0.7)
]
