# mask-rcnn 1x on COCO with the fast-itpn-tiny backbone: the Fast-iTPN-B config, another size (_base_/itpn_sizes.py).
_base_ = ['./mask-rcnn_fast-itpn-base_1x_coco.py', '../_base_/itpn_sizes.py']

model = dict(backbone={{_base_.fast_itpn_tiny}})
