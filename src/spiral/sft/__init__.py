"""`spiral sft`: supervised fine-tuning on expert trajectories generated here (the paper's SFT baseline).

- `settings`: the `sft` section and the SFT presets (presets/*.toml, which may extend `spiral train` presets).
- `expert`: the optimal agent's games, rationale templates, fine-tuning examples in the self-play template.
- `trainer`: `SFTTrainer`, a `spiral.training.trainer.Trainer` whose training is one supervised phase.
"""
