# Mask R-CNN 3x on COCO with Fast-iTPN-B (paper, section 5.3 and Table 5): the 1x config trained for 36 epochs,
# the lr (3e-4) dropped 10x at 3/4 and 11/12 of them (epochs 27 and 33), multi-scale training as in 1x.
# Other sizes: mask-rcnn_{fast-itpn-tiny,fast-itpn-small,fast-itpn-large,itpn-base,itpn-large}_3x_coco.py.
_base_ = ['./mask-rcnn_fast-itpn-base_1x_coco.py', '../_base_/itpn_schedule_3x.py']

train_cfg = {{_base_.itpn_3x_train_cfg}}
param_scheduler = {{_base_.itpn_3x_param_scheduler}}
