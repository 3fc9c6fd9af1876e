"""ADE20K (SceneParsing, ADEChallengeData2016): generator, validator and semantic-segmentation dataset.

Layout (``url`` holds ``ADEChallengeData2016/``, or is that folder itself)::

    ADEChallengeData2016/images/training/ADE_train_00000001.jpg
    ADEChallengeData2016/annotations/training/ADE_train_00000001.png     (values 0..150, 0 = other)
    ADEChallengeData2016/images/validation/...  annotations/validation/...

With ``reduce_zero_label`` (the standard setting) value 0 becomes the ignore index 255 and v becomes v-1,
so labels index :data:`ADE20K_CLASSES`.

One module a job: ``layout`` (where things are, mask values), ``generate``, ``dataset``, ``validate``.
"""
from .dataset import ADE20KSegmentation
from .generate import generate_ade20k
from .layout import clear_bad_values, find_base, reduce_zero_label
from .validate import validate_ade20k

__all__ = [
    "ADE20KSegmentation", "clear_bad_values", "find_base", "generate_ade20k", "reduce_zero_label",
    "validate_ade20k",
]
