"""mmdet's COCO and Objects365 and mmseg's ADE20K data sets that leave out what ``itpn.data.prepare`` listed as skipped.

``prepare`` validates a data set and lists its unusable samples (a 0-byte or undecodable image, an
image whose record or mask does not fit it) under ``skipped`` in ``manifest.json`` at the data set's
root; the project's own readers and the DOTA split leave them out. OpenMMLab's data sets read the
annotation file or image folder themselves, so these subclasses drop the listed samples from the data
list after it is built. The manifest is looked up at ``data_root`` and up to two folders above it
(ADE20K's ``data_root`` is the ``ADEChallengeData2016/`` folder inside the prepared root); without a
manifest nothing is dropped.
"""
from __future__ import annotations

import json
import os
from typing import Any, Optional

from mmdet.datasets import CocoDataset, Objects365V2Dataset
from mmdet.registry import DATASETS as MMDET_DATASETS
from mmengine.logging import MMLogger
from mmseg.datasets import ADE20KDataset
from mmseg.registry import DATASETS as MMSEG_DATASETS

from itpn.data._check import MANIFEST_NAME


def find_manifest(data_root: str, kind: str, levels: int = 2) -> tuple[Optional[str], dict[str, Any]]:
    """``(folder holding the manifest, manifest)`` of data set ``kind`` at ``data_root`` or up to ``levels``
    folders above it; ``(None, {})`` when there is none."""
    folder = os.path.abspath(data_root)
    for _ in range(levels + 1):
        path = os.path.join(folder, MANIFEST_NAME)
        if os.path.isfile(path):
            with open(path) as handle:
                manifest = json.load(handle)
            if manifest.get("kind") == kind:
                return folder, manifest
        folder = os.path.dirname(folder)
    return None, {}


class SkipListedMixin:
    """Drops the data infos whose ``img_path`` the manifest lists as skipped, and logs how many."""

    manifest_kind = ""

    def load_data_list(self) -> list[dict]:
        data_list = super().load_data_list()  # type: ignore[misc]
        root, manifest = find_manifest(self.data_root, self.manifest_kind)  # type: ignore[attr-defined]
        skipped = set(manifest.get("skipped", []))
        if not skipped:
            return data_list
        kept = [info for info in data_list
                if os.path.relpath(os.path.abspath(info["img_path"]), root).replace(os.sep, "/") not in skipped]
        if len(kept) < len(data_list):
            MMLogger.get_current_instance().info(
                f"{type(self).__name__}: left out {len(data_list) - len(kept)} image(s) listed as skipped in "
                f"{os.path.join(root, MANIFEST_NAME)}")
        return kept


@MMDET_DATASETS.register_module()
class ITPNCocoDataset(SkipListedMixin, CocoDataset):
    """mmdet's ``CocoDataset`` without the images ``manifest.json`` lists as skipped."""

    manifest_kind = "coco"


@MMDET_DATASETS.register_module()
class ITPNObjects365Dataset(SkipListedMixin, Objects365V2Dataset):
    """mmdet's ``Objects365V2Dataset`` (its ``patch<k>/<name>`` reading of the release's file names) without
    the images ``manifest.json`` lists as skipped."""

    manifest_kind = "objects365"


@MMSEG_DATASETS.register_module()
class ITPNADE20KDataset(SkipListedMixin, ADE20KDataset):
    """mmseg's ``ADE20KDataset`` without the images ``manifest.json`` lists as skipped."""

    manifest_kind = "ade20k"
