# The 3x schedule of the COCO configs (paper, section 5.3): 36 epochs, the lr dropped 10x after 3/4 and 11/12
# of them (epochs 27 and 33), after the same 500-iteration linear warm-up as 1x. A 3x config takes
# `train_cfg = {{_base_.itpn_3x_train_cfg}}` and `param_scheduler = {{_base_.itpn_3x_param_scheduler}}`.
itpn_3x_train_cfg = dict(max_epochs=36)
itpn_3x_param_scheduler = [
    dict(type='LinearLR', start_factor=0.001, by_epoch=False, begin=0, end=500),
    dict(type='MultiStepLR', begin=0, end=36, by_epoch=True, milestones=[27, 33], gamma=0.1),
]
