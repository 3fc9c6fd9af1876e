# DINO on Objects365 v2 with Fast-iTPN-B: the detection pre-training before the 6-epoch COCO fine-tune of
# Table 6 (61.8 box AP; section 5.3 "with pre-training on objects365"). The COCO DINO config with the 365
# classes and Objects365's layout (ITPNObjects365Dataset: mmdet's Objects365V2Dataset without the images
# prepare() listed as skipped). The paper gives no schedule for this step: 12 epochs with the lr dropped 10x
# for the last one, as the COCO DINO 1x config, are ours.
_base_ = ['./dino-5scale_fast-itpn-base_1x_coco.py']

itpn_dataset = 'objects365'
data_root = 'data/objects365/'

model = dict(bbox_head=dict(num_classes=365))
train_dataloader = dict(dataset=dict(type='ITPNObjects365Dataset', data_root=data_root,
                                     ann_file='annotations/zhiyuan_objv2_train.json', data_prefix=dict(img='train/')))
val_dataloader = dict(dataset=dict(type='ITPNObjects365Dataset', data_root=data_root,
                                   ann_file='annotations/zhiyuan_objv2_val.json', data_prefix=dict(img='val/')))
test_dataloader = val_dataloader
val_evaluator = dict(ann_file=data_root + 'annotations/zhiyuan_objv2_val.json')
test_evaluator = val_evaluator
