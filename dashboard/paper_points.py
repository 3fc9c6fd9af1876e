"""The paper's own accuracy / speed-up points, transcribed once, drawn by the dashboard beside ours.

Source: Y. Tian, L. Xie, J. Qiu, J. Jiao, Y. Wang, Q. Tian, Q. Ye, "Fast-iTPN: Integrally Pre-Trained
Transformer Pyramid Network with Token Migration" (the text the project works from is
``shared/paper/fast-itpn.txt``).

- Figure 5 and section 5.4.1: Fast-iTPN-B, Mask R-CNN fine-tuned 12 epochs on COCO, box mAP (%).
  Baseline 53.4; token migration 10/20/30/40 % give 53.4/53.3/53.2/53.0 and "accelerate inference
  speed to 15%, 20%, 23%, and 27%" (read as 1.15-1.27x); window attention "a 0.6% performance drop
  but 90% speed improvement" (52.8, 1.90x); with gathering tokens 52.7 at "approximately 85%"
  (1.85x); migration and gathering tokens with relative position embedding "70%" and "0.5%
  performance drop" (52.9, 1.70x). Figure 5 itself is an image; these are the numbers its text states.
- Table 7: Fast-iTPN-B, Faster R-CNN fine-tuned 1x on DOTA, mAP (%) and imgs/s; the speed-up is a
  row's imgs/s over the first row's 17.3.

Variant names are this project's (``itpn.models.VARIANTS``) for the same rows.
"""
from __future__ import annotations

import pandas as pd

FIGURE_5 = "Fig. 5: Fast-iTPN-B, Mask R-CNN 1×, COCO box mAP (%)"
TABLE_7 = "Table 7: Fast-iTPN-B, Faster R-CNN 1×, DOTA mAP (%)"
_TABLE_7_BASE_SPEED = 17.3  # imgs/s of the "W/o Speedup" row

# (task in our results store, source, variant, accuracy (%), speed-up over the baseline)
_POINTS = [
    ("detection", FIGURE_5, "baseline", 53.4, 1.00),
    ("detection", FIGURE_5, "migration_10", 53.4, 1.15),
    ("detection", FIGURE_5, "migration_20", 53.3, 1.20),
    ("detection", FIGURE_5, "migration_30", 53.2, 1.23),
    ("detection", FIGURE_5, "migration_40", 53.0, 1.27),
    ("detection", FIGURE_5, "window", 52.8, 1.90),
    ("detection", FIGURE_5, "window_gathering", 52.7, 1.85),
    ("detection", FIGURE_5, "migration_30_gathering", 52.9, 1.70),
    *[("rotated", TABLE_7, variant, accuracy, speed / _TABLE_7_BASE_SPEED) for variant, accuracy, speed in [
        ("baseline", 79.3, 17.3),
        ("window", 77.7, 28.4),
        ("window_hrpe", 77.9, 27.8),
        ("window_gathering", 78.6, 28.7),
        ("window_gathering_rpe", 77.8, 25.9),
        ("window_gathering_hrpe", 79.0, 26.0),
    ]],
]


def paper_points() -> pd.DataFrame:
    """The paper's points: ``task``, ``source``, ``variant``, ``accuracy`` (%), ``speedup`` (×)."""
    return pd.DataFrame(_POINTS, columns=["task", "source", "variant", "accuracy", "speedup"])
