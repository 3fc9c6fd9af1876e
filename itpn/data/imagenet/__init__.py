"""ImageNet-1K: class-folder layout, sharded-tar layout, generator, validators and datasets.

Folder layout (``url``)::

    train/<wnid>/<name>.JPEG
    val/<wnid>/<name>.JPEG

Sharded-tar layout, for object storage (each member is ``<wnid>/<name>.JPEG``)::

    classes.txt               one wnid per line; line i is class index i
    train/train-000000.tar ...
    val/val-000000.tar ...

One module a job: ``layout``, ``generate`` (and sharding), ``dataset``, ``validate``.
"""
from .dataset import ImageNetFolder, ImageNetTarShards
from .generate import generate_imagenet, shard_imagenet
from .validate import validate_imagenet, validate_imagenet_tar

__all__ = [
    "ImageNetFolder", "ImageNetTarShards", "generate_imagenet", "shard_imagenet", "validate_imagenet",
    "validate_imagenet_tar",
]
