"""Model folders that would load silently wrong are refused with one line (issue #19 item 6)."""

from __future__ import annotations

import pytest
import torch

from runkit.errors import UserError
from spiral.model import load_model


def _save(model, tok, folder, **kw):
    model.save_pretrained(folder, **kw)
    tok.save_pretrained(folder)
    return folder


def test_a_plain_folder_loads_with_the_same_weights(tiny, tmp_path):
    model, tok = tiny
    loaded = load_model(str(_save(model, tok, tmp_path / "m")), tok)
    for (k, a), (_, b) in zip(model.state_dict().items(), loaded.state_dict().items(), strict=True):
        assert torch.equal(a, b), k


def test_pickled_weights_only_are_refused(tiny, tmp_path):
    model, tok = tiny
    folder = _save(model, tok, tmp_path / "m")
    torch.save(model.state_dict(), folder / "pytorch_model.bin")
    (folder / "model.safetensors").unlink()
    with pytest.raises(UserError, match="only pickled weights"):
        load_model(str(folder), tok)


def test_missing_tensors_are_refused(tiny, tmp_path):
    from safetensors.torch import load_file, save_file

    model, tok = tiny
    folder = _save(model, tok, tmp_path / "m")
    weights = load_file(str(folder / "model.safetensors"))
    dropped = next(k for k in weights if "layers.1.mlp" in k)
    save_file({k: v for k, v in weights.items() if k != dropped}, str(folder / "model.safetensors"),
              metadata={"format": "pt"})  # fmt: skip
    with pytest.raises(UserError, match="lack 1 of the model's tensors"):
        load_model(str(folder), tok)


@pytest.mark.slow
def test_eval_games_refuses_a_checkpoint_with_a_flipped_byte(tiny_run, capsys):
    from spiral.cli import main

    run = tiny_run(1)  # a seconds-long tiny run whose checkpoint this test damages
    weights = sorted((run / "checkpoints").glob("step_*/model.safetensors"))[-1]  # the one --model RUN loads
    data = bytearray(weights.read_bytes())
    data[-10] ^= 0xFF
    weights.write_bytes(bytes(data))
    capsys.readouterr()
    code = main(
        ["eval", "games", "--model", str(run), "--games", "KuhnPoker-v2", "--opponents", "random", "--n", "2"]
    )
    assert code == 2 and "does not match its hash" in capsys.readouterr().err


@pytest.mark.slow
@pytest.mark.parametrize(
    ("edit", "message"), [("drop learner", "has no 'learner'"), ("text step", "'step' is 'abc'")]
)
def test_resume_of_a_damaged_state_is_one_line(tiny_run, capsys, edit, message):
    import hashlib
    import json

    from spiral.cli import main

    run = tiny_run(1)
    ckpt = sorted((run / "checkpoints").glob("step_*"))[-1]
    state = json.loads((ckpt / "state.json").read_text())
    pairs = state["__dict__"]  # the checkpoint skeleton: a dict is a list of [key, value] pairs
    if edit == "drop learner":
        pairs[:] = [p for p in pairs if p[0] != "learner"]
    else:
        next(p for p in pairs if p[0] == "step")[1] = "abc"
    (ckpt / "state.json").write_text(json.dumps(state))
    manifest = json.loads((ckpt / "manifest.json").read_text())  # re-hashed: only the content is wrong
    manifest["files"]["state.json"] = hashlib.sha256((ckpt / "state.json").read_bytes()).hexdigest()
    (ckpt / "manifest.json").write_text(json.dumps(manifest))
    capsys.readouterr()
    assert main(["train", "--resume", str(run), "--steps", "2"]) == 2
    err = capsys.readouterr().err
    assert message in err and len(err.strip().splitlines()) == 1


def test_an_unwritable_model_cache_is_one_line(tmp_path, monkeypatch):
    from spiral.model import _atomic_folder

    blocker = tmp_path / "not-a-folder"
    blocker.write_text("x")
    monkeypatch.setenv("SPIRAL_CACHE", str(blocker / "cache"))  # under a file: no folder can be made there
    with pytest.raises(UserError, match="set SPIRAL_CACHE to a writable folder"):
        _atomic_folder(blocker / "cache" / "model", lambda tmp: None)


@pytest.mark.parametrize("damage", ["flip a header byte", "empty"])
def test_a_damaged_plain_folder_without_a_manifest_is_one_line(tiny, tmp_path, damage):
    model, tok = tiny
    folder = _save(model, tok, tmp_path / "m")
    weights = folder / "model.safetensors"
    data = bytearray(weights.read_bytes())
    if damage == "empty":
        data = bytearray()
    else:
        data[3] ^= 0xFF  # the header's length: the file no longer parses
    weights.write_bytes(bytes(data))
    with pytest.raises(UserError, match="cannot load the model") as e:
        load_model(str(folder), tok)
    assert "\n" not in str(e.value)


def test_a_checkpoints_tokenizer_is_verified_before_it_is_read(tiny, tmp_path):
    from runkit.checkpoint import save_checkpoint
    from spiral.model import load_tokenizer

    model, tok = tiny

    def extra(folder):
        model.save_pretrained(folder)
        tok.save_pretrained(folder)

    ckpt = save_checkpoint(tmp_path / "ckpt", {"step": 1}, write_extra=extra)
    (ckpt / "tokenizer.json").write_text((ckpt / "tokenizer.json").read_text()[:100])  # truncated
    with pytest.raises(UserError, match="tokenizer.json does not match its hash"):
        load_tokenizer(str(ckpt))


def test_an_optimizer_state_of_the_wrong_shape_is_one_line(tiny):
    from spiral.config import LearnerSettings
    from spiral.model import add_lora
    from spiral.training.learner import Learner

    model, _ = tiny
    learner = Learner(add_lora(model, 4, 8.0, 0.0, ["q_proj"]), LearnerSettings())
    state = learner.state_dict()
    state["optimizer"]["state"] = {0: {"step": torch.tensor(1.0), "exp_avg": torch.zeros(3, 3),
                                       "exp_avg_sq": torch.zeros(3, 3)}}  # fmt: skip
    with pytest.raises(UserError, match="optimizer state exp_avg of parameter 0 has shape"):
        learner.load_state_dict(state)


def test_a_wrong_shaped_weight_is_one_line_without_the_load_report(tiny, tmp_path, capsys):
    from safetensors.torch import load_file, save_file

    model, tok = tiny
    folder = _save(model, tok, tmp_path / "m")
    weights = load_file(str(folder / "model.safetensors"))
    key = next(k for k in weights if "q_proj" in k)
    weights[key] = torch.zeros(3, 3)
    save_file(weights, str(folder / "model.safetensors"), metadata={"format": "pt"})
    capsys.readouterr()
    with pytest.raises(UserError, match="shape does not fit"):
        load_model(str(folder), tok)
    out = capsys.readouterr()
    assert "LOAD REPORT" not in out.out + out.err and "MISMATCH" not in out.out + out.err
