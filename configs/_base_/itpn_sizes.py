# The backbone of each size, merged into a base-size config's backbone:
#   _base_ = ['./mask-rcnn_fast-itpn-base_3x_coco.py', '../_base_/itpn_sizes.py']
#   model = dict(backbone={{_base_.itpn_large}})
# Drop path (detection and segmentation): the released iTPN detection configs (sunsmarterjie/iTPN det/configs/itpn: 0.3 for iTPN-B 3x,
# 0.2 for iTPN-L and the Cascade Mask R-CNN); the paper gives none, and none is released for Fast-iTPN, whose
# values follow its classification recipe's sizes (ours). The layer-wise decay stays 0.90 for every size
# (paper, section 5.3).
fast_itpn_tiny = dict(model_name='fast_itpn_tiny_patch16_224', drop_path_rate=0.1)
fast_itpn_small = dict(model_name='fast_itpn_small_patch16_224', drop_path_rate=0.1)
fast_itpn_base = dict(model_name='fast_itpn_base_patch16_224', drop_path_rate=0.1)
fast_itpn_large = dict(model_name='fast_itpn_large_patch16_224', drop_path_rate=0.2)
itpn_base = dict(model_name='itpn_base_patch16_224', drop_path_rate=0.3)
itpn_large = dict(model_name='itpn_large_patch16_224', drop_path_rate=0.2)
