"""``prepare(kind, url)``: the first stage of every pipeline run, the same for real and generated data;
``write_manifest`` (it validates when given no report, so it lives here, above the validators and readers)."""

from __future__ import annotations

import inspect
import json
from dataclasses import dataclass
from typing import Any, Callable

from ._check import MANIFEST_NAME
from ._gen import GeneratedData, Rule
from .ade20k import generate_ade20k
from .ade20k.generate import ARGUMENTS as ADE20K_ARGUMENTS
from .coco import generate_coco, generate_objects365
from .coco.generate import ARGUMENTS as COCO_ARGUMENTS
from .coco.generate import OBJECTS365_ARGUMENTS
from .dota import generate_dota
from .dota.generate import ARGUMENTS as DOTA_ARGUMENTS
from .errors import ValidationReport
from .fs import join, open_fs, write_bytes
from .imagenet import generate_imagenet
from .imagenet.generate import ARGUMENTS as IMAGENET_ARGUMENTS
from .manifest import build_manifest, content_hash, load_manifest
from .validate import check_kind, validate


def _generate_imagenet_tar(url: str, **kwargs: Any) -> GeneratedData:
    return generate_imagenet(url, layout="tar", **kwargs)


# generate_imagenet's arguments but ``layout`` (fixed to "tar"): what a parameters file may give this kind
_IMAGENET_SIGNATURE = inspect.signature(generate_imagenet, eval_str=True)
_generate_imagenet_tar.__signature__ = _IMAGENET_SIGNATURE.replace(  # type: ignore[attr-defined]
    parameters=[parameter for name, parameter in _IMAGENET_SIGNATURE.parameters.items() if name != "layout"])


GENERATORS: dict[str, Callable[..., GeneratedData]] = {
    "imagenet": generate_imagenet,
    "imagenet_tar": _generate_imagenet_tar,
    "coco": generate_coco,
    "objects365": generate_objects365,
    "ade20k": generate_ade20k,
    "dota": generate_dota,
}
# What each generator's arguments may be: the generator checks them before it writes, flows.params before a run.
GENERATOR_ARGUMENTS: dict[str, dict[str, Rule]] = {
    "imagenet": IMAGENET_ARGUMENTS,
    "imagenet_tar": IMAGENET_ARGUMENTS,
    "coco": COCO_ARGUMENTS,
    "objects365": OBJECTS365_ARGUMENTS,
    "ade20k": ADE20K_ARGUMENTS,
    "dota": DOTA_ARGUMENTS,
}


@dataclass
class PreparedData:
    """Result of :func:`prepare`: where the data is, its manifest and the validation report."""

    kind: str
    url: str
    manifest: dict[str, Any]
    report: ValidationReport
    generated: GeneratedData | None = None


def _plain(value: Any) -> Any:
    """JSON-shaped copy of generator arguments (tuples become lists), for comparison with a manifest."""
    if isinstance(value, (tuple, list)):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in sorted(value.items())}
    return value


def write_manifest(
    kind: str,
    url: str,
    *,
    report: ValidationReport | None = None,
    generator: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Write ``manifest.json`` at the data set's root and return it.

    Without ``report`` the data set is validated first (default mode: bad samples are listed as skipped).
    """
    if report is None:
        report = validate(kind, url)
    elif report.kind != kind:
        raise ValueError(f"report is for kind {report.kind!r}, not {kind!r}")
    manifest = build_manifest(report, generator=generator)
    fs, root = open_fs(url)
    write_bytes(fs, join(root, MANIFEST_NAME), (json.dumps(manifest, indent=2, sort_keys=False) + "\n").encode())
    return manifest


def prepare(
    kind: str,
    url: str,
    *,
    generate: bool = False,
    strict: bool = False,
    workers: int | None = None,
    **generator_kwargs: Any,
) -> PreparedData:
    """(Optionally generate,) validate and write ``manifest.json`` for the data set of ``kind`` at ``url``.

    With ``generate`` the generator writes a stand-in data set at ``url`` first (``generator_kwargs`` go to
    it, e.g. ``seed``, ``num_classes``, ``overwrite``); when ``url`` already holds a data set generated with
    the same arguments it is reused (and re-validated). Real data takes the same path with
    ``generate=False``: only the URL differs. ``strict`` raises on the first bad sample; by default bad
    samples are skipped and listed in the manifest.
    """
    check_kind(kind)
    generated: GeneratedData | None = None
    previous = load_manifest(url)
    record: dict[str, Any] | None = (previous or {}).get("generator")
    if generate:
        name = GENERATORS[kind].__name__.lstrip("_")
        arguments = _plain({k: v for k, v in generator_kwargs.items() if k != "overwrite"})
        reusable = record is not None and record.get("name") == name and record.get("arguments") == arguments
        if not reusable or generator_kwargs.get("overwrite"):
            generated = GENERATORS[kind](url, **generator_kwargs)
            record = {"name": name, "arguments": arguments, "params": _plain(generated.params)}
    elif generator_kwargs:
        raise TypeError(f"generator arguments {sorted(generator_kwargs)} need generate=True")
    report = validate(kind, url, strict=strict, workers=workers)
    if generated is None and previous and previous.get("content_hash") != content_hash(report.file_hashes):
        record = None  # the files changed since they were generated: no longer the generator's output
    manifest = write_manifest(kind, url, report=report, generator=record)
    return PreparedData(kind=kind, url=url, manifest=manifest, report=report, generated=generated)
