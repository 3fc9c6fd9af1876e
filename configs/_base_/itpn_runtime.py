# Shared by every OpenMMLab config of the project: load the adapters (itpn.mmlab) and seed the run;
# run_detection / run_segmentation / run_rotated add the hook that writes the results-store rows.
custom_imports = dict(imports=['itpn.mmlab'], allow_failed_imports=False)
randomness = dict(seed=0)  # reproducible runs (cuDNN may still choose non-deterministic kernels)
