# DINO on COCO for 6 epochs from the Objects365 detector (Table 6: Fast-iTPN-B, "6" epochs, 61.8 box AP): the
# COCO DINO config started from the weights of dino-5scale_fast-itpn-base_objects365.py (`load_from`, or
# `--cfg-options load_from=<its last checkpoint>`); the 365-way classifier does not fit COCO's 80 classes and
# starts anew (mmengine leaves a parameter whose shape differs at its initialisation, with a warning), as do
# the denoising label embeddings. The lr drop after epoch 5 of 6 keeps the 1x config's 11/12 (ours).
_base_ = ['./dino-5scale_fast-itpn-base_1x_coco.py']

load_from = None  # the Objects365 run's checkpoint
max_epochs = 6
train_cfg = dict(max_epochs=max_epochs)
param_scheduler = [dict(type='MultiStepLR', begin=0, end=max_epochs, by_epoch=True, milestones=[5], gamma=0.1)]
