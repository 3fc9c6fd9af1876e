# Cascade Mask R-CNN 1x on COCO with Fast-iTPN-B (Table 5's "CMR"): the Mask R-CNN 1x config (pre-trained pyramid
# as the neck, multi-scale training, AdamW with layer-wise decay 0.90, 12 epochs) with three cascaded box heads
# (_base_/itpn_cascade.py). The lr is the released Cascade config's 1e-4 (sunsmarterjie/iTPN
# det/configs/itpn/cascade_pixel_itpn_base_3x.py); the paper states 3e-4 for Mask R-CNN only.
_base_ = ['./mask-rcnn_fast-itpn-base_1x_coco.py', '../_base_/itpn_cascade.py']

norm_cfg = dict(type='SyncBN', requires_grad=True)
model = dict(
    type='CascadeRCNN',
    roi_head=dict(
        _delete_=True,
        type='CascadeRoIHead',
        num_stages=3,
        stage_loss_weights=[1, 0.5, 0.25],
        bbox_roi_extractor=dict(type='SingleRoIExtractor', out_channels=256, featmap_strides=[4, 8, 16, 32],
                                roi_layer=dict(type='RoIAlign', output_size=7, sampling_ratio=0)),
        bbox_head={{_base_.itpn_cascade_bbox_heads}},
        mask_roi_extractor=dict(type='SingleRoIExtractor', out_channels=256, featmap_strides=[4, 8, 16, 32],
                                roi_layer=dict(type='RoIAlign', output_size=14, sampling_ratio=0)),
        mask_head=dict(type='FCNMaskHead', num_convs=4, in_channels=256, conv_out_channels=256, num_classes=80,
                       norm_cfg=norm_cfg,
                       loss_mask=dict(type='CrossEntropyLoss', use_mask=True, loss_weight=1.0))),
    train_cfg=dict(rcnn={{_base_.itpn_cascade_train_rcnn}}),
)
optim_wrapper = dict(optimizer=dict(lr=1e-4))
