"""The analytical cost estimate of the paper recipe (benchmarks/paper_cost.py): parameter count, FLOP and memory
formulas, and the page it writes."""

from __future__ import annotations

import pytest


@pytest.fixture(scope="module")
def pc(bench_script):
    return bench_script("paper_cost")


def test_parameter_count_from_the_architecture_is_qwen3_4b(pc):
    total = pc.param_count(pc.QWEN3_4B)["total"]
    assert abs(total - 4.02e9) / 4.02e9 < 0.02
    assert pc.kv_bytes_per_token(pc.QWEN3_4B) == 2 * 36 * 8 * 128 * 2


def test_learner_flops_are_linear_in_tokens_and_epochs(pc):
    arch = pc.QWEN3_4B
    base = pc.learner_flops(arch, 16, 1800, epochs=1)
    assert pc.learner_flops(arch, 32, 1800, epochs=1) == pytest.approx(2 * base)
    assert pc.learner_flops(arch, 16, 1800, epochs=2) == pytest.approx(2 * base)
    assert pc.learner_flops(arch, 16, 1800, epochs=3) == pytest.approx(3 * base)
    # 6 * N per token dominates; the causal attention term is a few percent at 1,800 tokens
    dense = 6 * pc.matmul_params(arch) * 16 * 1800
    assert 1.0 < base / dense < 1.1
    # checkpointing and the old log-prob recompute each add one forward
    fwd = pc.forward_flops(arch, 16, 1800)
    assert pc.learner_flops(arch, 16, 1800, 2, checkpointing=True) == pytest.approx(2 * base + 2 * fwd)
    assert pc.learner_flops(arch, 16, 1800, 2, recompute_old=True) == pytest.approx(2 * base + fwd)


def test_zero3_over_8_gpus_divides_the_optimizer_states_by_8(pc):
    full, sharded = pc.state_bytes(pc.QWEN3_4B, 1), pc.state_bytes(pc.QWEN3_4B, 8)
    n = pc.param_count(pc.QWEN3_4B)["total"]
    assert sum(full.values()) == pytest.approx(16 * n)
    for part, value in full.items():
        assert sharded[part] == pytest.approx(value / 8)


def test_gradient_checkpointing_lowers_the_activation_memory(pc):
    on = pc.activation_bytes(pc.QWEN3_4B, 4396, checkpointing=True)
    off = pc.activation_bytes(pc.QWEN3_4B, 4396, checkpointing=False)
    assert on < off / 5
    r, a = pc.Recipe(), pc.Assumptions()
    assert (
        pc.learner_memory(pc.QWEN3_4B, r, a, 1, True)["total"]
        < pc.learner_memory(pc.QWEN3_4B, r, a, 1, False)["total"]
    )


def test_decode_is_faster_with_more_bandwidth_and_slower_with_longer_turns(pc):
    arch, a = pc.QWEN3_4B, pc.Assumptions()
    h100, _ = pc.generation_seconds(arch, pc.H100, a, 16, 300, 1500)
    h200, _ = pc.generation_seconds(arch, pc.H200, a, 16, 300, 1500)
    longer, _ = pc.generation_seconds(arch, pc.H100, a, 16, 300, 4096)
    assert h200 < h100 < longer
    # memory-bound floor: every decode step reads the bf16 weights at least once
    assert h100 > 1500 * 2 * pc.param_count(arch)["total"] / (pc.H100.bandwidth * a.bw_eff)


def test_the_written_page_has_the_tables_and_the_notice(pc, tmp_path, capsys):
    out = tmp_path / "page.md"
    assert pc.main(["--out", str(out)]) == 0
    page = out.read_text()
    assert page == capsys.readouterr().out
    assert pc.NOTICE in page
    assert "| configuration | response tokens |" in page
    assert "### Learner memory per GPU (GB)" in page
    for topo in pc.TOPOLOGIES:
        assert page.count(f"| {topo.name} | 1500 |") == 2  # one row on H100, one on H200
        assert page.count(f"| {topo.name} | 4096 |") == 2
