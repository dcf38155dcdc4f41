"""The PPO-clip loss against hand-computed numbers; batching; skipped non-finite updates."""

from __future__ import annotations

import math

import pytest
import torch

from spiral.config import LearnerSettings
from spiral.training.learner import Learner, collate, kl_penalty, ppo_clip_loss, response_logprobs
from spiral.training.rollout import Turn


def _loss(ratio: float, adv: float, clip: float = 0.2):
    """Loss and d(loss)/d(logp) of one token with the given ratio and advantage (loss_norm 1)."""
    old = torch.tensor([[-1.0]])
    logp = (old + math.log(ratio)).requires_grad_(True)
    per_sample, stats = ppo_clip_loss(logp, old, torch.tensor([adv]), torch.ones(1, 1), clip, 1.0)
    per_sample.sum().backward()
    return per_sample.item(), logp.grad.item(), stats["clip_frac"].item()


def test_ratio_one_gives_minus_advantage_times_tokens_over_the_constant():
    logp = torch.tensor([[-1.0, -2.0, -3.0]])
    mask = torch.tensor([[1.0, 1.0, 0.0]])  # the third token is padding
    per_sample, stats = ppo_clip_loss(logp, logp.clone(), torch.tensor([2.0]), mask, 0.2, 4.0)
    assert per_sample.item() == pytest.approx(-2.0 * 2 / 4.0)  # -(1 * A) per token, summed, / 4
    assert stats["ratio_mean"].item() == pytest.approx(1.0)
    assert stats["clip_frac"].item() == 0.0


@pytest.mark.parametrize(
    ("ratio", "adv", "loss", "grad", "clipped"),
    [
        (1.5, 2.0, -2.4, 0.0, 1.0),  # A > 0, ratio above 1 + eps: clipped, no gradient
        (0.5, 2.0, -1.0, -1.0, 0.0),  # A > 0, ratio below 1 - eps: not clipped, grad = -ratio * A
        (0.5, -2.0, 1.6, 0.0, 1.0),  # A < 0, ratio below 1 - eps: clipped, no gradient
        (1.5, -2.0, 3.0, 3.0, 0.0),  # A < 0, ratio above 1 + eps: not clipped, grad = -ratio * A
        (1.1, 2.0, -2.2, -2.2, 0.0),  # inside the clip range: plain ratio * A
    ],
)
def test_clipping_for_both_signs_of_the_advantage(ratio, adv, loss, grad, clipped):
    got_loss, got_grad, frac = _loss(ratio, adv)
    assert got_loss == pytest.approx(loss)
    assert got_grad == pytest.approx(grad, abs=1e-6)
    assert frac == clipped


def test_samples_are_summed_over_tokens_not_averaged():
    logp = torch.zeros(2, 4)
    mask = torch.tensor([[1.0, 1.0, 1.0, 1.0], [1.0, 0.0, 0.0, 0.0]])
    per_sample, _ = ppo_clip_loss(logp, logp, torch.tensor([1.0, 1.0]), mask, 0.2, 2.0)
    assert per_sample.tolist() == pytest.approx([-2.0, -0.5])


def test_kl_penalty_is_zero_at_the_reference_and_positive_elsewhere():
    logp = torch.tensor([[-1.0, -2.0]])
    assert kl_penalty(logp, logp, torch.ones(1, 2), 1.0).item() == pytest.approx(0.0)
    # k3: exp(d) - d - 1 with d = ref - logp = 1 for both tokens
    assert kl_penalty(logp, logp + 1, torch.ones(1, 2), 1.0).item() == pytest.approx(2 * (math.e - 2))


def _turns(n: int = 3) -> list[Turn]:
    out = []
    for i in range(n):
        prompt = list(range(10, 14 + 3 * i))
        resp = list(range(20, 22 + i))
        out.append(Turn(i, "G", 0, prompt, resp, [-1.0] * len(resp), "x", ["[a]"], advantage=1.0 - i))
    return out


def test_collate_aligns_every_response_at_the_same_column():
    batch = collate(_turns())
    P = max(len(t.prompt_ids) for t in _turns())
    assert batch["input_ids"].shape == (3, P + 4)
    assert batch["response_ids"][1, :2].tolist() == [20, 21]
    assert batch["response_mask"].sum(-1).tolist() == [2, 3, 4]
    assert batch["attention_mask"][0].tolist().index(1) == P - 4  # left-padded prompt
    first = batch["attention_mask"][0].tolist().index(1)
    assert batch["position_ids"][0, first : first + 6].tolist() == list(range(6))


def test_batched_logprobs_equal_unpadded_single_sequence_logprobs(tiny):
    model, _ = tiny
    turns = _turns()
    batched = response_logprobs(model, collate(turns), temperature=0.7)
    for b, t in enumerate(turns):
        with torch.no_grad():
            ids = torch.tensor([t.prompt_ids + t.response_ids])
            logits = model(input_ids=ids).logits[0, len(t.prompt_ids) - 1 : -1] / 0.7
        want = (
            torch.log_softmax(logits.float(), -1)
            .gather(-1, torch.tensor(t.response_ids)[:, None])
            .squeeze(-1)
        )
        assert batched[b, : len(t.response_ids)].detach() == pytest.approx(want, abs=1e-4)


def _weights(model) -> torch.Tensor:
    return torch.cat([p.detach().flatten() for p in model.parameters()]).clone()


def test_update_changes_weights_and_reports_metrics(tiny):
    model, _ = tiny
    before = _weights(model)
    learner = Learner(model, LearnerSettings(lr=1e-3, micro_batch_size=2, loss_norm=4.0))
    m = learner.update(_turns(), step=0)
    assert not torch.equal(before, _weights(model))
    assert m["train/skipped_updates"] == 0.0 and math.isfinite(m["train/loss"]) and m["train/grad_norm"] > 0
    assert m["train/samples"] == 3.0 and m["train/tokens"] == 9.0


def test_update_switched_off_leaves_weights_alone(tiny):
    model, _ = tiny
    before = _weights(model)
    m = Learner(model, LearnerSettings(lr=1e-3, update=False)).update(_turns(), step=0)
    assert torch.equal(before, _weights(model)) and "train/loss" in m


def test_non_finite_loss_skips_the_update_and_is_counted(tiny):
    model, _ = tiny
    before = _weights(model)
    turns = _turns()
    turns[0].advantage = float("nan")
    learner = Learner(model, LearnerSettings(lr=1e-3, ppo_epochs=2))
    m = learner.update(turns, step=0)
    assert m["train/skipped_updates"] == 2.0 and learner.skipped_total == 2
    assert torch.equal(before, _weights(model))
    assert learner.update(_turns(), step=1)["train/skipped_updates"] == 0.0  # the run goes on


def test_linear_warmup_then_constant():
    learner = Learner(torch.nn.Linear(2, 2), LearnerSettings(lr=1.0, warmup_steps=4))
    assert [learner.lr_at(s) for s in range(6)] == pytest.approx([0.25, 0.5, 0.75, 1.0, 1.0, 1.0])
