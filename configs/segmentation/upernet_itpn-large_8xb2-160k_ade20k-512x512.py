# UPerNet on ADE20K with the itpn-large backbone: the Fast-iTPN-B config, another size (_base_/itpn_sizes.py);
# the head takes each pyramid level (256 channels) concatenated with the backbone's map of its stride.
_base_ = ['./upernet_fast-itpn-base_8xb2-160k_ade20k-512x512.py', '../_base_/itpn_sizes.py']

in_channels = [448, 640, 1024, 1024]
model = dict(backbone={{_base_.itpn_large}}, decode_head=dict(in_channels=in_channels),
             auxiliary_head=dict(in_channels=in_channels[2]))
