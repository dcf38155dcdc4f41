"""Training: self-play rollouts into Turn records, advantages, the PPO learner, the warm-up and the run loop.

- `rollout`: the collector (N concurrent games, one batched generation per round) and its Turn records;
- `advantage`: role-conditioned advantage estimation (RAE);
- `learner`: the PPO-clip update (free-form responses and constrained moves);
- `warmup`: the format warm-up (rejection-sampled fine-tuning on the model's own legal moves);
- `factories`: a run's policy and collector from its settings (local and Ray paths alike);
- `trainer`: the loop, checkpoints and resume; `ray`: rollout workers as Ray actors.
"""
