# Cascade Mask R-CNN 3x on COCO with Fast-iTPN-B (section 5.3: "a 3x Cascade Mask R-CNN towards higher
# accuracy"): the 1x Cascade config trained for 36 epochs, lr dropped 10x at epochs 27 and 33 (3/4 and 11/12),
# as the released cascade_pixel_itpn_base_3x.py (lr step [27, 33], 36 epochs).
_base_ = ['./cascade-mask-rcnn_fast-itpn-base_1x_coco.py', '../_base_/itpn_schedule_3x.py']

train_cfg = {{_base_.itpn_3x_train_cfg}}
param_scheduler = {{_base_.itpn_3x_param_scheduler}}
