"""What a training run needs around the Lightning module: config and preflight checks, the
model/data fit, resume rules, the final report, the finite-loss check, atomic checkpoint writes and
the shims of library internals."""
