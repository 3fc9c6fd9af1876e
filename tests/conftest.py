"""Markers whose tests need hardware or a stack this machine may lack: ``gpu`` (a CUDA device) and
``openmmlab`` (mmdet, mmseg and mmrotate, installed by scripts/install_openmmlab.sh). Without them the
tests are skipped, except that under CI (``CI`` set) a missing OpenMMLab stack fails them, as in
tests/mmlab/conftest.py: CI must have installed it."""
import importlib.util
import os

import pytest
import torch

OPENMMLAB_MODULES = ("mmengine", "mmcv", "mmdet", "mmseg", "mmrotate")


def openmmlab_missing() -> list[str]:
    return [name for name in OPENMMLAB_MODULES if importlib.util.find_spec(name) is None]


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    missing = openmmlab_missing()
    no_cuda = not torch.cuda.is_available()
    for item in items:
        if no_cuda and item.get_closest_marker("gpu"):
            item.add_marker(pytest.mark.skip(reason="needs a CUDA device"))
        if missing and not os.environ.get("CI") and item.get_closest_marker("openmmlab"):
            item.add_marker(pytest.mark.skip(reason=f"the OpenMMLab stack is not installed ({', '.join(missing)} "
                                                    f"missing): run scripts/install_openmmlab.sh"))
