"""Fast-iTPN models, pre-training, fine-tuning, data and benchmarks."""
from . import models  # noqa: F401  (registers the models with timm)

__version__ = "0.1.0"
