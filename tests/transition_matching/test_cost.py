"""The cost of a backbone pass against a head step (transition_matching.cost, `tm cost`, the line `tm train`
prints)."""

from __future__ import annotations

import json

import pytest
import torch

from transition_matching.cli import main
from transition_matching.config import PRESET_DIR
from transition_matching.cost import PAPER_RATIO, config_pass_cost, count_flops, pass_cost
from transition_matching.nn.backbone import MLPBackbone, TransformerBackbone
from transition_matching.nn.head import FlowHead


def time_mlp_flops(w: int) -> int:
    """FLOPs per row of the time embedding (64 sinusoidal features -> w -> w)."""
    return 2 * (64 * w + w * w)


def test_mlp_backbone_flops_are_its_linear_layers():
    net = MLPBackbone(2, 32, 3, 0)
    x, t = torch.randn(10, 1, 2), torch.rand(10, 1)
    per_row = 2 * (2 * 32 + 3 * (32 * 64 + 64 * 32)) + time_mlp_flops(32)
    assert count_flops(lambda: net(x, t, None), net) == 10 * per_row


def test_transformer_flops_include_attention():
    """Per block and token: qkv, proj and the MLP (12 w^2 multiply-adds) plus QK^T and AV (2 L w)."""
    w, L, B, depth = 32, 5, 3, 2
    net = TransformerBackbone(4, w, depth, 2, L, 0)
    x, t = torch.randn(B, L, 4), torch.rand(B, L)
    blocks = 2 * B * L * depth * (12 * w * w + 2 * L * w)
    total = blocks + 2 * B * L * 4 * w + B * L * time_mlp_flops(w)  # + token embedding and time MLP
    assert count_flops(lambda: net(x, t, None), net) == total
    attention = 2 * B * L * depth * 2 * L * w
    assert (
        count_flops(lambda: net(x, t, None)) == total - attention
    )  # torch's counter alone misses them (CPU)


def test_pass_cost_per_token_and_ratios():
    torch.manual_seed(0)
    backbone, head = MLPBackbone(2, 256, 4, 0).eval(), FlowHead(2, 256, 16, 1, True).eval()
    cost = pass_cost(backbone, head, 1, 2, batch=512, repeats=3)
    per_row_bb = 2 * (2 * 256 + 4 * 2 * 256 * 512) + time_mlp_flops(256)
    assert cost.backbone_flops == per_row_bb
    head_row = 2 * (2 * 16 + 5 * 16 * 16 + 2 * 16 * 16 + 16 * 2)  # embed, stacked AdaLN (3 + 2), MLP, out
    assert cost.head_flops == pytest.approx(head_row + time_mlp_flops(16) / 512)  # + s embedding of one row
    assert cost.flop_ratio == pytest.approx(per_row_bb / cost.head_flops) and cost.flop_ratio > 100
    assert cost.backbone_params == sum(p.numel() for p in backbone.parameters())
    assert cost.time_ratio is not None and cost.time_ratio > 3  # a 256 x 4 MLP against a 16-wide head
    d = cost.as_dict()
    assert d["flop_ratio"] == cost.flop_ratio and json.dumps(d)
    assert "by FLOPs" in cost.describe() and "by CPU time" in cost.describe()
    untimed = pass_cost(backbone, head, 1, 2, batch=8, repeats=0)
    assert untimed.time_ratio is None and "by CPU time" not in untimed.describe()


def test_fm_is_measured_against_the_head_dtm_would_have():
    from transition_matching.config import make_config, resolve
    from transition_matching.trainer import load_training_data

    costs = []
    for method in ("fm", "dtm"):
        cfg = make_config(
            method=method, data="digits", patch=4, width=32, depth=1, head_width=16, head_depth=1
        )
        data = load_training_data(cfg)
        costs.append(config_pass_cost(resolve(cfg, data.n_tokens), data, rows=64, repeats=0))
    assert costs[0].flop_ratio == costs[1].flop_ratio and costs[0].n_tokens == 4 and costs[0].batch == 16


def test_tm_cost_command_and_train_print_the_ratio(tmp_path, capsys):
    from tm_testutil import tiny_argv

    assert main(["cost", "--method", "dtm", "--data", "checkerboard", "--width", "64", "--repeats", "1"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("dtm on checkerboard (mlp 64 x ") and "by FLOPs" in out and "by CPU time" in out
    assert main(["cost", "--data", "digits", "--patch", "4", "--json", "--repeats", "0"]) == 0
    got = json.loads(capsys.readouterr().out)
    assert got["n_tokens"] == 4 and got["time_ratio"] is None and got["flop_ratio"] > 1
    assert main(["train", "--out", str(tmp_path / "r"), "--no-progress", *tiny_argv(steps=2)]) == 0
    assert "cost per token: backbone pass" in capsys.readouterr().out
    assert PAPER_RATIO == 20.0


PAPER_PRESETS = sorted(p.stem for p in PRESET_DIR.glob("*-paper.toml"))


def test_paper_presets_come_in_fm_dtm_pairs_that_differ_only_in_the_method():
    from transition_matching.config import load_preset

    assert sorted(f"{m}-{k}-paper" for k in ("2d", "digits", "mnist") for m in ("dtm", "fm")) == PAPER_PRESETS
    for kind in ("2d", "digits", "mnist"):
        fm, dtm = load_preset(f"fm-{kind}-paper"), load_preset(f"dtm-{kind}-paper")
        assert (fm.pop("method"), dtm.pop("method")) == ("fm", "dtm") and fm == dtm


@pytest.mark.parametrize("preset", PAPER_PRESETS)
def test_paper_presets_are_in_the_paper_regime(preset):
    """The analytical ratio (FLOPs per token of a backbone pass against one head step) is >= 20."""
    from transition_matching.config import make_config, resolve
    from transition_matching.trainer import load_training_data

    cfg = make_config(preset)
    data = load_training_data(cfg)
    cost = config_pass_cost(resolve(cfg, data.n_tokens), data, rows=64, repeats=0)
    assert cost.flop_ratio >= PAPER_RATIO and cost.param_ratio >= PAPER_RATIO
