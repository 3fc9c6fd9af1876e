"""``validate(kind, url)``: the first step of every flow."""

from __future__ import annotations

import logging
from typing import Callable

from .ade20k import validate_ade20k
from .coco import validate_coco, validate_objects365
from .dota import validate_dota
from .errors import ValidationReport
from .imagenet import validate_imagenet, validate_imagenet_tar

log = logging.getLogger(__name__)

VALIDATORS: dict[str, Callable[..., ValidationReport]] = {
    "imagenet": validate_imagenet,
    "imagenet_tar": validate_imagenet_tar,
    "coco": validate_coco,
    "objects365": validate_objects365,
    "ade20k": validate_ade20k,
    "dota": validate_dota,
}
KINDS = tuple(VALIDATORS)


def check_kind(kind: str) -> None:
    if kind not in VALIDATORS:
        raise ValueError(f"unknown data-set kind {kind!r}; use one of {', '.join(KINDS)}")


def validate(kind: str, url: str, strict: bool = False, *, workers: int | None = None) -> ValidationReport:
    """Check the data set of ``kind`` at ``url``: layout, file counts, image decodability, annotation schema,
    box/polygon ranges, mask values, class ids and duplicates.

    Every problem is listed in the report with its file and line/record. A broken layout (nothing to train
    on) always raises; with ``strict`` the first error raises as its named exception (e.g.
    :class:`CorruptImageError`); otherwise the affected samples are listed in ``report.skipped``.
    """
    check_kind(kind)
    report = VALIDATORS[kind](url, strict=strict, workers=workers)
    level = logging.WARNING if report.problems else logging.INFO
    log.log(level, "%s", report.summary())
    return report
