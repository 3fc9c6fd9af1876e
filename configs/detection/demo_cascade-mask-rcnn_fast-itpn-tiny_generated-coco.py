# CPU demo of the Cascade Mask R-CNN config: the Mask R-CNN demo (shrunken Fast-iTPN-T on the generated COCO
# stand-in, 128 px, BN for SyncBN) with the three cascaded box heads, each 2fc and narrow as the demo's one head.
_base_ = ['./demo_mask-rcnn_fast-itpn-tiny_generated-coco.py', '../_base_/itpn_cascade.py']

model = dict(
    type='CascadeRCNN',
    roi_head=dict(
        _delete_=True,
        type='CascadeRoIHead',
        num_stages=3,
        stage_loss_weights=[1, 0.5, 0.25],
        bbox_roi_extractor=dict(type='SingleRoIExtractor', out_channels=256, featmap_strides=[4, 8, 16, 32],
                                roi_layer=dict(type='RoIAlign', output_size=7, sampling_ratio=0)),
        bbox_head=[
            dict(type='Shared2FCBBoxHead', in_channels=256, fc_out_channels=256, roi_feat_size=7, num_classes=80,
                 bbox_coder=dict(type='DeltaXYWHBBoxCoder', target_means=[0.0, 0.0, 0.0, 0.0], target_stds=stds),
                 reg_class_agnostic=False, reg_decoded_bbox=True,
                 loss_cls=dict(type='CrossEntropyLoss', use_sigmoid=False, loss_weight=1.0),
                 loss_bbox=dict(type='GIoULoss', loss_weight=10.0))
            for stds in ([0.1, 0.1, 0.2, 0.2], [0.05, 0.05, 0.1, 0.1], [0.033, 0.033, 0.067, 0.067])
        ],
        mask_roi_extractor=dict(type='SingleRoIExtractor', out_channels=256, featmap_strides=[4, 8, 16, 32],
                                roi_layer=dict(type='RoIAlign', output_size=14, sampling_ratio=0)),
        mask_head=dict(type='FCNMaskHead', num_convs=2, in_channels=256, conv_out_channels=64, num_classes=80,
                       norm_cfg=dict(type='BN', requires_grad=True),
                       loss_mask=dict(type='CrossEntropyLoss', use_mask=True, loss_weight=1.0))),
    train_cfg=dict(rcnn={{_base_.itpn_cascade_train_rcnn}}),
)
