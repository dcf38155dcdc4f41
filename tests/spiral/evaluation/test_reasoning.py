"""Reasoning evaluation: prompts, grading, resumable JSONL, config guard, CLI, and HF checkpoint loading."""

import json
import zlib

import pytest

from runkit.errors import UserError
from spiral.evaluation import reasoning
from spiral.evaluation.reasoning import INSTRUCTION, evaluate, messages_for, read_results
from spiral.evaluation.suites import Suite, build_suite
from spiral.prompting import plain_render


class FakeGenerator:
    """Deterministic: answers right for items whose gold hashes even, counts what it was asked."""

    def __init__(self, right: str = "hash"):
        self.calls = 0
        self.prompts: list[str] = []
        self.right = right

    def render(self, messages):
        return plain_render(messages)

    def generate(self, prompts, n, temperature, top_p, max_new_tokens, seed):
        self.calls += 1
        self.prompts += prompts
        out = []
        for p in prompts:
            gold = p.split("GOLD=")[1].split("\n")[0] if "GOLD=" in p else ""
            ok = self.right == "all" or (self.right == "hash" and zlib.crc32(gold.encode()) % 2 == 0)
            out.append([f"step by step... \\boxed{{{gold if ok else 'wrong'}}}"] * n)
        return out


def make_suite(tmp_path, n_items=6, name="toy.jsonl"):
    path = tmp_path / name
    rows = [
        {"id": f"q{i}", "question": f"What is {i}+{i}?\nGOLD={2 * i}", "answer": str(2 * i)}
        for i in range(n_items)
    ]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return build_suite(f"jsonl:{path}")


CONFIG = {
    "model": "fake",
    "n": 3,
    "temperature": 0.6,
    "top_p": 0.95,
    "max_new_tokens": 64,
    "seed": 0,
    "fewshot": 0,
}


def test_prompt_follows_the_paper_and_few_shot_boxes_answers(tmp_path):
    suite = make_suite(tmp_path)
    msgs = messages_for(suite.items[1], suite.items[2:4])
    assert msgs[-1]["content"].endswith(INSTRUCTION) and "\\boxed{}" in INSTRUCTION
    assert [m["role"] for m in msgs] == ["user", "assistant", "user", "assistant", "user"]
    assert msgs[1]["content"].endswith("\\boxed{4}.")
    choice = Suite("mc", [suite.items[0].__class__("x/1", "x", "Q?", "B", "choice", ("yes", "no"))])
    text = messages_for(choice.items[0], [])[0]["content"]
    assert "A. yes\nB. no" in text and "letter" in text


def test_evaluate_grades_and_writes_one_line_per_sample(tmp_path):
    suite = make_suite(tmp_path)
    gen = FakeGenerator()
    summary = evaluate(gen, suite, tmp_path / "out", CONFIG, batch_items=4, progress=False)
    rows = read_results(tmp_path / "out" / "results.jsonl")
    assert len(rows) == 6 * 3
    expected = sum(zlib.crc32(str(2 * i).encode()) % 2 == 0 for i in range(6)) / 6
    assert summary["overall"]["accuracy"] == pytest.approx(expected)
    assert summary["overall"]["boxed_rate"] == 1.0
    lo, hi = summary["overall"]["ci"]
    assert lo <= expected <= hi
    row = rows[("toy/q0", 0)]
    assert {"prompt_hash", "response", "answer", "correct", "score", "gold"} <= set(row)
    saved = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert saved["overall"]["items"] == 6 and saved["config"]["suite"] == "jsonl:toy"


def test_resume_skips_finished_items(tmp_path):
    suite = make_suite(tmp_path, n_items=6)
    out = tmp_path / "out"
    first = FakeGenerator()
    suite.items = suite.items[:4]  # as if --limit stopped early (limit is not part of the identity)
    evaluate(first, suite, out, CONFIG, batch_items=2, progress=False)
    assert first.calls == 2
    again = FakeGenerator()
    evaluate(again, suite, out, CONFIG, batch_items=2, progress=False)
    assert again.calls == 0
    more = FakeGenerator()
    full = make_suite(tmp_path, n_items=6)
    summary = evaluate(more, full, out, CONFIG, batch_items=2, progress=False)
    assert more.calls == 1 and len(more.prompts) == 2
    assert summary["overall"]["items"] == 6


def test_resume_after_a_torn_line_redoes_only_that_item(tmp_path):
    suite = make_suite(tmp_path, n_items=3)
    out = tmp_path / "out"
    evaluate(FakeGenerator(), suite, out, CONFIG, progress=False)
    path = out / "results.jsonl"
    data = path.read_text(encoding="utf-8").splitlines(keepends=True)
    path.write_text("".join(data[:-1]) + data[-1][:20], encoding="utf-8")  # crash mid-write
    gen = FakeGenerator()
    evaluate(gen, suite, out, CONFIG, progress=False)
    assert len(gen.prompts) == 1
    assert all(json.loads(line) for line in path.read_text(encoding="utf-8").splitlines())


def test_a_different_config_is_refused(tmp_path):
    suite = make_suite(tmp_path, n_items=2)
    evaluate(FakeGenerator(), suite, tmp_path / "out", CONFIG, progress=False)
    with pytest.raises(UserError, match="temperature: 0.6 -> 1.0"):
        evaluate(FakeGenerator(), suite, tmp_path / "out", {**CONFIG, "temperature": 1.0}, progress=False)


def test_cli_runs_with_a_patched_generator(tmp_path, monkeypatch, capsys):
    import spiral.evaluation.generation as generation
    from spiral.cli import main

    suite_path = tmp_path / "toy.jsonl"
    make_suite(tmp_path)
    monkeypatch.setattr(generation, "load_generator", lambda *a, **k: FakeGenerator("all"))
    out = tmp_path / "cli"
    argv = [
        "eval",
        "reasoning",
        "--model",
        "fake",
        "--suite",
        f"jsonl:{suite_path}",
        "--n",
        "2",
        "--out",
        str(out),
    ]
    assert main(argv) == 0
    text = capsys.readouterr().out
    assert "overall" in text and "1.000" in text
    assert main([*argv[:-2], "--out", str(out), "--temperature", "0.9"]) == 2  # refused: different config
    assert main(["eval", "reasoning", "--model", "fake", "--suite", "nope"]) == 2


def test_checkpoint_folders_load_with_from_pretrained(tmp_path):
    """A save_pretrained folder (what checkpoints hold) loads in plain transformers and in the evaluator."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer, LlamaConfig, LlamaForCausalLM

    from spiral.evaluation.generation import load_generator
    from spiral.model import char_tokenizer

    tok = char_tokenizer("0123456789+=? abcdefghijklmnopqrstuvwxyz\\{}")
    config = LlamaConfig(
        vocab_size=len(tok), hidden_size=32, intermediate_size=64, num_hidden_layers=1, num_attention_heads=2,
        num_key_value_heads=1, max_position_embeddings=256, eos_token_id=tok.eos_token_id,
        pad_token_id=tok.pad_token_id, bos_token_id=None,
    )  # fmt: skip
    torch.manual_seed(0)
    model = LlamaForCausalLM(config)
    model.save_pretrained(tmp_path / "ckpt")
    tok.save_pretrained(tmp_path / "ckpt")

    loaded = AutoModelForCausalLM.from_pretrained(tmp_path / "ckpt")
    loaded_tok = AutoTokenizer.from_pretrained(tmp_path / "ckpt")
    ids = torch.tensor([loaded_tok("1+1=?")["input_ids"]])
    with torch.no_grad():
        assert torch.allclose(model(ids).logits, loaded(ids).logits, atol=1e-6)

    gen = load_generator(str(tmp_path / "ckpt"), batch_size=4)
    out = gen.generate(["1+1=?"], n=2, temperature=1.0, top_p=1.0, max_new_tokens=5, seed=0)
    assert len(out) == 1 and len(out[0]) == 2 and all(isinstance(t, str) for t in out[0])
    assert all(0 < c <= 5 for c in gen.last_token_counts[0])
    assert gen.render([{"role": "user", "content": "hi"}]).startswith("Question: hi")  # no chat template


def test_default_output_folder(tmp_path):
    assert str(reasoning._default_out("smollm2-135m-instruct", "jsonl:/data/math500.jsonl")).endswith(
        "reasoning/smollm2-135m-instruct/math500"
    )
    run = tmp_path / "run"
    (run / "checkpoints").mkdir(parents=True)
    (run / "config.json").write_text("{}")
    assert reasoning._default_out(str(run), "champ") == run / "eval" / "reasoning" / "champ"
