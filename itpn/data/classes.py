"""Label spaces of the four data sets."""

from __future__ import annotations

from functools import lru_cache


@lru_cache(maxsize=1)
def imagenet_wnids() -> tuple[str, ...]:
    """The 1000 ImageNet-1K WordNet ids in the standard (sorted) class order, from timm's bundled table."""
    from timm.data import ImageNetInfo

    return tuple(ImageNetInfo().label_names())


@lru_cache(maxsize=1)
def coco_categories() -> tuple[tuple[int, str], ...]:
    """The 80 COCO 2017 ``(category id, name)`` pairs; ids run 1..90 with gaps, as in the annotation files.

    Taken from torchvision's COCO category table, where unused ids are marked ``N/A``.
    """
    from torchvision.models.detection import FasterRCNN_ResNet50_FPN_Weights

    names = FasterRCNN_ResNet50_FPN_Weights.DEFAULT.meta["categories"]
    return tuple((cat_id, name) for cat_id, name in enumerate(names) if cat_id > 0 and name != "N/A")


@lru_cache(maxsize=1)
def objects365_categories() -> tuple[tuple[int, str], ...]:
    """The 365 Objects365 v2 ``(category id, name)`` pairs, ids 1..365 in the order of mmdet's
    ``Objects365V2Dataset`` class table (what its annotation files list). Needs mmdet (``make setup``
    installs it): the table is read from there, as COCO's is from torchvision's."""
    try:
        from mmdet.datasets.objects365 import Objects365V2Dataset
    except ImportError as exc:
        raise ImportError(f"the Objects365 categories are read from mmdet, which is not importable ({exc}). "
                          f"Fix: run `make setup` (scripts/install_openmmlab.sh installs it)") from None
    return tuple(enumerate(Objects365V2Dataset.METAINFO["classes"], start=1))


# ADE20K SceneParsing (ADEChallengeData2016): mask value v in 1..150 is class ADE20K_CLASSES[v - 1]; 0 = other.
ADE20K_CLASSES: tuple[str, ...] = (
    "wall", "building", "sky", "floor", "tree", "ceiling", "road", "bed", "windowpane", "grass",
    "cabinet", "sidewalk", "person", "earth", "door", "table", "mountain", "plant", "curtain", "chair",
    "car", "water", "painting", "sofa", "shelf", "house", "sea", "mirror", "rug", "field",
    "armchair", "seat", "fence", "desk", "rock", "wardrobe", "lamp", "bathtub", "railing", "cushion",
    "base", "box", "column", "signboard", "chest of drawers", "counter", "sand", "sink", "skyscraper",
    "fireplace", "refrigerator", "grandstand", "path", "stairs", "runway", "case", "pool table", "pillow",
    "screen door", "stairway", "river", "bridge", "bookcase", "blind", "coffee table", "toilet", "flower",
    "book", "hill", "bench", "countertop", "stove", "palm", "kitchen island", "computer", "swivel chair",
    "boat", "bar", "arcade machine", "hovel", "bus", "towel", "light", "truck", "tower", "chandelier",
    "awning", "streetlight", "booth", "television receiver", "airplane", "dirt track", "apparel", "pole",
    "land", "bannister", "escalator", "ottoman", "bottle", "buffet", "poster", "stage", "van", "ship",
    "fountain", "conveyer belt", "canopy", "washer", "plaything", "swimming pool", "stool", "barrel",
    "basket", "waterfall", "tent", "bag", "minibike", "cradle", "oven", "ball", "food", "step", "tank",
    "trade name", "microwave", "pot", "animal", "bicycle", "lake", "dishwasher", "screen", "blanket",
    "sculpture", "hood", "sconce", "vase", "traffic light", "tray", "ashcan", "fan", "pier", "crt screen",
    "plate", "monitor", "bulletin board", "shower", "radiator", "glass", "clock", "flag",
)

ADE20K_IGNORE_INDEX = 255

# DOTA v1.0 object categories, in the order used by the DOTA devkit and OpenMMLab configs.
DOTA_CLASSES: tuple[str, ...] = (
    "plane", "baseball-diamond", "bridge", "ground-track-field", "small-vehicle", "large-vehicle", "ship",
    "tennis-court", "basketball-court", "storage-tank", "soccer-ball-field", "roundabout", "harbor",
    "swimming-pool", "helicopter",
)
