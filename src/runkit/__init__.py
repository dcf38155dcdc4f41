"""Run infrastructure shared by `spiral` and `transition_matching`: run folders, atomic writes, seeding,
metrics, progress, checkpoints and the CLI error convention."""
