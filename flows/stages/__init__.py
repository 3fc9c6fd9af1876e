"""The pipeline's stages, one command each, shared by the Prefect flows and ``dvc.yaml``:

    python -m flows.stages prepare_data --params params.yaml
    python -m flows.stages pretrain --params params.yaml   # experiment.gpus: 8 -> torchrun, 8 processes

* ``cli``: that command; a training stage with ``experiment.gpus > 1`` re-launches itself under
  ``torchrun --standalone --nproc_per_node <gpus>``, so the flows, DVC and a user's shell launch it alike;
* ``run``: one stage in this process, unless its result is current;
* ``bodies``: what each stage does: read its section of the parameters, call the library;
* ``result``: what a stage leaves in ``<stage folder>/``: ``result.json`` (its outputs, metric rows,
  curves, benchmark rows and cache key), ``metrics.json`` and ``curves.csv`` (DVC's metrics and plots);
* ``cache``: the stage's one cache key (its parameters, upstream keys and code);
* ``run_folder``: who may keep or clear ``<stage folder>/run``, the library's own files.
"""
