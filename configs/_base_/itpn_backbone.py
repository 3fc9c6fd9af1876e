# The pre-trained backbone whose feature pyramid is the detector's neck (strides 4..64, 256 channels): every
# COCO and DOTA config takes it as `model = dict(backbone={{_base_.itpn_backbone}}, neck=None)`, and a config of
# another size merges one entry of `itpn_sizes.py` into it. `_delete_` drops the ResNet of mmdet's base files.
itpn_backbone = dict(
    _delete_=True,
    type='ITPNBackbone',
    model_name='fast_itpn_base_patch16_224',
    img_size=224,  # the pre-training grid; position embeddings are resampled to each input
    out='pyramid',
    pyramid_extra_levels=2,
    fpn_dim=256,
    fpn_depth=1,
    drop_path_rate=0.1,
    acceleration='baseline',  # an itpn.models.acceleration variant
    checkpoint=None,  # the pre-training export (model.safetensors)
)
