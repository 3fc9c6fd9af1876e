# cascade-mask-rcnn 3x on COCO with the itpn-large backbone: the Fast-iTPN-B config, another size (_base_/itpn_sizes.py).
_base_ = ['./cascade-mask-rcnn_fast-itpn-base_3x_coco.py', '../_base_/itpn_sizes.py']

model = dict(backbone={{_base_.itpn_large}})
