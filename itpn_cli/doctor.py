"""``itpn doctor``: what this environment has, and what the demo still needs.

In the manner of ``dvc doctor`` and mmcv's ``collect_env``: one line per component with its
version or state. A check is *required* when ``itpn demo`` cannot run without it (torch,
torchvision's compiled ops, timm, the OpenMMLab stack with mmcv's compiled ops, Prefect, a
writable state directory, a reachable store); the others (DVC, Streamlit, Chromium for the
browser test, a GPU) are reported and never fail the run. Every failing or missing item names
its fix. The grouping and the fixes are ours; nothing here changes the environment.
"""
from __future__ import annotations

import importlib
import importlib.metadata as metadata
import os
import shutil
import sys
from dataclasses import dataclass
from typing import Callable

OK, INFO, WARN, FAIL = "ok", "info", "warn", "FAIL"
SETUP_FIX = "run `make setup` in the repository"
MMLAB_FIX = "bash scripts/install_openmmlab.sh (or make setup): installs the OneDL OpenMMLab stack and builds mmcv's ops"
PIN = {"torch": "2.14.1", "torchvision": "0.29.1"}
OPENMMLAB = {"mmengine": "onedl-mmengine", "mmdet": "onedl-mmdetection", "mmseg": "onedl-mmsegmentation",
             "mmrotate": "onedl-mmrotate"}


@dataclass(frozen=True)
class Check:
    """One line of the report: ``status`` is ok / info / warn / FAIL; ``fix`` says what to run."""

    name: str
    status: str
    detail: str
    fix: str = ""


def _version(distribution: str) -> str | None:
    try:
        return metadata.version(distribution)
    except metadata.PackageNotFoundError:
        return None


def _import_error(module: str) -> str | None:
    """None when ``module`` imports, else the error in one line."""
    try:
        importlib.import_module(module)
    except Exception as exc:  # any failure to import is what we report
        return f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}".rstrip(": ")
    return None


def check_python() -> Check:
    version = ".".join(map(str, sys.version_info[:3]))
    if sys.version_info < (3, 11):
        return Check("python", FAIL, f"{version} at {sys.executable}", "itpn needs Python >= 3.11")
    return Check("python", OK, f"{version} at {sys.executable}")


def check_torch() -> list[Check]:
    error = _import_error("torch")
    if error:
        return [Check("torch", FAIL, error, f"{SETUP_FIX} (pip install torch=={PIN['torch']})")]
    import torch

    checks = [Check("torch", OK if torch.__version__.split("+")[0] == PIN["torch"] else WARN,
                    f"{torch.__version__} (the project pins {PIN['torch']}), {torch.get_num_threads()} CPU threads")]
    if torch.cuda.is_available():
        names = sorted({torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())})
        checks.append(Check("cuda", OK, f"CUDA {torch.version.cuda}, {torch.cuda.device_count()} GPU(s): "
                                        f"{', '.join(names)}, bf16 {torch.cuda.is_bf16_supported()}"))
    else:
        built = f"built with CUDA {torch.version.cuda}" if torch.version.cuda else "a CPU build"
        checks.append(Check("cuda", INFO, f"no GPU visible ({built}); everything runs on the CPU"))
    return checks


def check_torchvision() -> Check:
    """torchvision must load its compiled ops beside this torch (a mismatched wheel fails in nms)."""
    error = _import_error("torchvision")
    if error is None:
        try:
            import torch
            import torchvision

            torchvision.ops.nms(torch.zeros(1, 4), torch.zeros(1), 0.5)
        except Exception as exc:
            error = f"its compiled ops do not load beside torch: {exc}".splitlines()[0]
    if error:
        return Check("torchvision", FAIL, error, f"pip install torch=={PIN['torch']} torchvision=={PIN['torchvision']}")
    return Check("torchvision", OK, f"{_version('torchvision')}, compiled ops load")


def check_package(module: str, distribution: str, required: bool, fix: str, what: str = "") -> Check:
    error = _import_error(module)
    if error:
        return Check(distribution, FAIL if required else WARN, error + (f" ({what})" if what else ""), fix)
    return Check(distribution, OK, _version(distribution) or "installed")


def check_openmmlab() -> list[Check]:
    """mmcv with its compiled ops (``mmcv._ext``), then mmengine, mmdet, mmseg, mmrotate."""
    checks = []
    error = _import_error("mmcv.ops")
    version = _version("onedl-mmcv") or _version("mmcv")
    if error:
        detail = f"{version or 'not installed'}; compiled ops do not load: {error}"
        checks.append(Check("mmcv", FAIL, detail, MMLAB_FIX))
    else:
        checks.append(Check("mmcv", OK, f"{version}, compiled ops load"))
    fix = "the same script as for mmcv" if error else MMLAB_FIX
    for module, distribution in OPENMMLAB.items():
        checks.append(check_package(module, distribution, True, fix, "COCO / ADE20K / DOTA fine-tuning"))
    return checks


def check_chromium() -> Check:
    path = shutil.which("chromium") or shutil.which("chromium-browser")
    if path is None:
        return Check("chromium", WARN, "not found (only the dashboard's browser test needs it)",
                     "bash scripts/install_system_deps.sh")
    return Check("chromium", OK, path)


def check_state_dir() -> Check:
    from services.settings import state_dir

    path = state_dir()
    existing = next((p for p in (path, *path.parents) if p.exists()), None)
    writable = existing is not None and os.access(existing, os.W_OK)
    free_gb = shutil.disk_usage(existing).free / 2**30 if existing else 0.0
    if not writable:
        return Check("state dir", FAIL, f"{path} is not writable",
                     "set ITPN_STATE_DIR to a writable folder, or run from a folder you own")
    status = OK if free_gb >= 2 else WARN
    return Check("state dir", status, f"{path} ({'exists' if path.exists() else 'created on first run'}), "
                                      f"{free_gb:.0f} GiB free", "" if status == OK else "the demo writes about 1 GiB")


def check_store() -> Check:
    """The store URL, and whether its schema is at the code's head revision."""
    from services.settings import store_url
    from services.store import StoreError, current_revision, head_revision
    from services.store.engine import check_connection, display_url, make_engine, parse_url, sqlite_path

    url = store_url()
    shown = display_url(url)
    try:
        parsed = parse_url(url)
        if parsed.get_backend_name() == "sqlite":
            path = sqlite_path(parsed)
            if path is not None and not path.exists():
                return Check("results store", OK, f"{shown}: not created yet (the first run creates it)")
        engine = make_engine(url, read_only=True)
        try:
            check_connection(engine, url)
            current, head = current_revision(engine), head_revision()
        finally:
            engine.dispose()
    except StoreError as exc:
        return Check("results store", FAIL, str(exc).splitlines()[0],
                     "start the database or set ITPN_STORE_URL to a reachable one")
    except Exception as exc:
        return Check("results store", FAIL, f"{shown}: {type(exc).__name__}: {exc}".splitlines()[0],
                     "check ITPN_STORE_URL and the database driver (pip install -e '.[postgres]' for PostgreSQL)")
    if current == head:
        return Check("results store", OK, f"{shown}, migrated (revision {head})")
    state = "never migrated" if current is None else f"at revision {current}"
    return Check("results store", WARN, f"{shown} {state}, the code's head is {head} (runs migrate it themselves)",
                 "itpn store upgrade")


CHECKS: list[Callable[[], Check | list[Check]]] = [
    check_python,
    check_torch,
    check_torchvision,
    lambda: check_package("timm", "timm", True, SETUP_FIX),
    check_openmmlab,
    lambda: check_package("prefect", "prefect", True, "pip install -e '.[pipeline]'", "runs the pipeline's flows"),
    lambda: check_package("dvc", "dvc", False, "pip install -e '.[pipeline]'", "`dvc repro` only"),
    lambda: check_package("streamlit", "streamlit", False, "pip install -e '.[pipeline]'", "`itpn dashboard` only"),
    check_chromium,
    check_state_dir,
    check_store,
]


def run_checks() -> list[Check]:
    """Every check in report order."""
    checks: list[Check] = []
    for check in CHECKS:
        result = check()
        checks.extend(result if isinstance(result, list) else [result])
    return checks


def failed(checks: list[Check]) -> list[Check]:
    """The checks that stop ``itpn demo``."""
    return [check for check in checks if check.status == FAIL]
