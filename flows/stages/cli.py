"""``python -m flows.stages <stage> --params FILE``: the command the flows, ``dvc.yaml`` and a user's shell
run. It checks the parameters file whole before anything runs; a training stage with
``experiment.gpus > 1`` re-launches itself under ``torchrun --standalone --nproc_per_node <gpus>``."""
from __future__ import annotations

import argparse
import json
import os
import sys

from ..outline import DISTRIBUTED_STAGES, STAGE_NAMES
from ..params import ParamsError, PipelineParams
from .run import run_stage


def stage_command(stage: str, params_file: str, gpus: int, *extra: str) -> list[str]:
    """The command that runs ``stage``: ``torchrun --standalone --nproc_per_node <gpus>`` for a training
    stage on several GPUs of one node, else one Python process."""
    if gpus > 1 and stage in DISTRIBUTED_STAGES:
        return [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={gpus}", "-m",
                "flows.stages", stage, "--params", params_file, *extra]
    return [sys.executable, "-m", "flows.stages", stage, "--params", params_file, *extra]


def main(argv: list[str] | None = None) -> int:
    """Run one stage; exit 2, naming every problem of the parameters file, when it is invalid."""
    parser = argparse.ArgumentParser(prog="python -m flows.stages", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("stage", choices=STAGE_NAMES)
    parser.add_argument("--params", default="params.yaml")
    parser.add_argument("--force", action="store_true", help="run even if a result with the same key exists "
                        "(DVC's stages pass it: DVC decides when a stage runs)")
    parser.add_argument("--fresh", action="store_true", help="discard the checkpoints of an earlier run of the same "
                        "key instead of resuming from them")
    args = parser.parse_args(argv)
    try:
        params = PipelineParams.load(args.params, check_data=True)
    except ParamsError as error:
        parser.exit(2, f"{error}\n")
    if args.stage in DISTRIBUTED_STAGES and params.experiment.gpus > 1 and "TORCHELASTIC_RUN_ID" not in os.environ:
        flags = [flag for flag, wanted in (("--force", args.force), ("--fresh", args.fresh)) if wanted]
        command = stage_command(args.stage, args.params, params.experiment.gpus, *flags)
        print(" ".join(command), file=sys.stderr, flush=True)
        os.execv(command[0], command)  # torchrun's processes run this again, each as one rank
    result = run_stage(args.stage, params, force=args.force, fresh=args.fresh)
    print(json.dumps({"stage": result.stage, "key": result.key, "seconds": round(result.seconds, 1),
                      "outputs": result.outputs}))
    return 0
