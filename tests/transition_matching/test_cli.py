"""The `tm` command line end to end on tiny models, and its one-line errors."""

import json

import numpy as np
import pytest
from tm_testutil import tiny_argv

from transition_matching.cli import main


def _train(tmp_path, name, **kw):
    out = tmp_path / name
    assert main(["train", "--out", str(out), "--no-progress", *tiny_argv(**kw)]) == 0
    return out


def test_help_lists_every_command(capsys):
    with pytest.raises(SystemExit):
        main(["--help"])
    text = capsys.readouterr().out
    for cmd in ("train", "sample", "eval", "plot", "cost", "demo"):
        assert cmd in text


def test_train_sample_eval_plot_on_2d(tmp_path, capsys):
    run = _train(tmp_path, "dtm2d", method="dtm", data="checkerboard")
    assert (run / "config.json").exists() and (run / "metrics.jsonl").exists()
    out = tmp_path / "s.npz"
    assert (
        main(
            ["sample", "--run", str(run), "--n", "50", "--steps", "3", "--head-steps", "2", "--out", str(out)]
        )
        == 0
    )
    assert np.load(out)["x"].shape == (50, 2)
    assert "6 head" in capsys.readouterr().out  # 3 steps x 2 head steps
    assert main(["eval", "--run", str(run), "--n", "200", "--steps", "4", "--json"]) == 0
    results = json.loads(capsys.readouterr().out)
    assert results["backbone_evals"] == 4 and results["w2"] > 0
    assert main(["plot", "--run", str(run), "--n", "200", "--steps", "4"]) == 0
    assert {p.name for p in (run / "plots").iterdir()} >= {"scatter.png", "density.png", "trajectories.png"}
    assert "data:image/png;base64" in (run / "report.html").read_text()


def test_resume_continues_a_run(tmp_path, capsys):
    run = _train(tmp_path, "fm", method="fm", data="moons", steps=10)
    assert main(["train", "--resume", str(run), "--steps", "20", "--no-progress"]) == 0
    assert "to step 20" in capsys.readouterr().out


def test_digits_with_guidance_and_classifier_metrics(tmp_path, capsys):
    run = _train(tmp_path, "fhtm_digits", method="fhtm", data="digits", T=1, patch=4, steps=4)
    out = tmp_path / "d.npz"
    argv = [
        "sample",
        "--run",
        str(run),
        "--n",
        "12",
        "--steps",
        "1",
        "--head-steps",
        "1",
        "--cfg",
        "2",
        "--class",
        "3",
    ]
    assert main([*argv, "--out", str(out)]) == 0
    f = np.load(out)
    assert f["x"].shape == (12, 8, 8, 1) and (f["y"] == 3).all()
    capsys.readouterr()
    assert main(["eval", "--run", str(run), "--n", "100", "--head-steps", "1", "--json"]) == 0
    results = json.loads(capsys.readouterr().out)
    assert {"cfid", "class_acc", "w2", "nn_ratio"} <= set(results)
    assert main(["plot", "--run", str(run), "--head-steps", "1"]) == 0
    assert (run / "plots" / "samples.png").exists() and (run / "plots" / "samples_cfg2.png").exists()


def test_preset_loads_and_flags_override(tmp_path):
    run = _train(tmp_path, "p", preset="dtm-2d", steps=5)
    cfg = json.loads((run / "config.json").read_text())
    assert cfg["method"] == "dtm" and cfg["steps"] == 5 and cfg["kind"] == "tm"


@pytest.mark.parametrize(
    "argv, message",
    [
        (["train", "--method", "ddpm"], "unknown method 'ddpm'"),
        (["train", "--data", "cifar"], "unknown data 'cifar'"),
        (["train", "--steps", "0"], "--steps must be >= 1"),
        (["train", "--preset", "nope"], "no preset 'nope'"),
        (["train", "--method", "fhtm", "--backbone", "mlp"], "MLP backbone"),
        (["train", "--data", "missing.npz"], "no such .npz"),
    ],
)
def test_bad_training_input_is_one_line_and_exit_2(tmp_path, capsys, argv, message):
    assert main([*argv, "--out", str(tmp_path / "x"), "--no-progress"]) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and len(err.splitlines()) == 1


def test_bad_npz_shape_fails_cleanly(tmp_path, capsys):
    p = tmp_path / "bad.npz"
    np.savez(p, x=np.zeros(10))
    assert main(["train", "--data", str(p), "--out", str(tmp_path / "r")]) == 2
    assert "'x' must be real numbers" in capsys.readouterr().err


def _empty(path):
    path.write_bytes(b"")
    return path


def _npz(tmp_path, name, **arrays):
    p = tmp_path / name
    np.savez(p, **arrays)
    return p


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (
            lambda d: (np.save(d / "a.npy", np.zeros((5, 2))), (d / "a.npy").rename(d / "a.npz"))[1],
            "bare array",
        ),
        (lambda d: _empty(d / "e.npz"), "not a readable .npz"),
        (
            lambda d: _npz(d, "l.npz", x=np.zeros((4, 2)), y=np.array([0, 1, 2, 2**40])),
            "labels must be below",
        ),
        (lambda d: _npz(d, "n.npz", x=np.array([[0.0, np.nan], [1.0, 2.0]])), "NaN or infinite"),
        (lambda d: _npz(d, "i.npz", x=np.array([[0.0, np.inf], [1.0, 2.0]])), "NaN or infinite"),
        (lambda d: _npz(d, "z.npz", x=np.zeros((5, 0))), "no empty axis"),
        (lambda d: _npz(d, "c.npz", x=np.ones((5, 2)) * (1 + 1j)), "real numbers"),
    ],
)
def test_bad_user_data_is_one_line(tmp_path, capsys, make, message):
    p = make(tmp_path)
    assert main(["train", "--data", str(p), "--out", str(tmp_path / "r"), "--steps", "1"]) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and len(err.splitlines()) == 1


def test_sampling_errors(tmp_path, capsys):
    run = _train(tmp_path, "artm", method="artm", data="8gaussians", T=2, steps=2)
    cases = [
        (["--steps", "0"], "must be >= 1"),
        (["--steps", "3"], "trained with T=2"),
        (["--method", "dtm"], "is a 'artm' run, not a 'dtm' run"),
        (["--class", "1"], "has no classes"),
        (["--n", "100000000000"], "--n must be between 1 and 1,000,000"),
        (["--n", "0"], "--n must be between"),
    ]
    for extra, message in cases:
        assert main(["sample", "--run", str(run), "--out", str(tmp_path / "o.npz"), *extra]) == 2
        assert message in capsys.readouterr().err
    assert main(["sample", "--run", str(run), "--out", str(tmp_path)]) == 2
    assert "is a folder" in capsys.readouterr().err
    assert main(["train", "--resume", str(run), "--method", "fm"]) == 2
    assert "cannot resume with method='fm'" in capsys.readouterr().err
    assert main(["eval", "--run", str(tmp_path)]) == 2
    assert "not a run folder" in capsys.readouterr().err


def test_demo_smoke(tmp_path, capsys):
    argv = ["demo", "--out", str(tmp_path / "demo"), "--only", "fm-8gaussians", "dtm-digits"]
    assert main([*argv, "--steps", "3", "--eval-n", "200", "--jobs", "1", "--no-progress"]) == 0
    out = capsys.readouterr().out
    assert "summary report" in out and (tmp_path / "demo" / "report.html").exists()
    for name in ("fm-8gaussians", "dtm-digits"):
        assert (tmp_path / "demo" / name / "report.html").exists()
        assert (tmp_path / "demo" / name / "eval.json").exists()


def test_checkpoint_that_does_not_fit_the_config(tmp_path, capsys):
    run = _train(tmp_path, "w", method="dtm", data="moons", steps=2)
    cfg = json.loads((run / "config.json").read_text())
    (run / "config.json").write_text(json.dumps({**cfg, "width": 32}))
    assert main(["sample", "--run", str(run), "--out", str(tmp_path / "o.npz")]) == 2
    assert "does not fit the network" in capsys.readouterr().err


def _one_line_exit_2(capsys, argv, message):
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and message in err, err


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--lr", "nan"], "--lr must be a finite number"),
        (["--lr", "0"], "--lr must be > 0"),
        (["--ema", "1.5"], "--ema must be in [0, 1)"),
        (["--width", "-5"], "--width must be >= 0, got -5"),
    ],
)
def test_impossible_values_are_one_line(tmp_path, capsys, flags, message):
    _one_line_exit_2(capsys, ["train", *tiny_argv(), *flags, "--out", str(tmp_path / "r")], message)


def test_a_preset_with_a_negative_width_is_one_line(tmp_path, capsys):
    preset = tmp_path / "bad.toml"
    preset.write_text('method = "fm"\nwidth = -5\n')
    _one_line_exit_2(
        capsys, ["train", "--preset", str(preset), "--out", str(tmp_path / "r")], "--width must be >= 0"
    )


def test_resume_of_a_checkpoint_without_its_model_or_of_another_width_is_one_line(tmp_path, capsys):
    from runkit.checkpoint import list_checkpoints, load_checkpoint, save_checkpoint

    run = _train(tmp_path, "r")
    capsys.readouterr()
    step, path = list_checkpoints(run / "checkpoints")[-1]
    config = json.loads((run / "config.json").read_text())
    (run / "config.json").write_text(json.dumps({**config, "width": config["width"] * 2}))
    _one_line_exit_2(capsys, ["train", "--resume", str(run)], "does not fit this model")
    (run / "config.json").write_text(json.dumps(config))
    state = load_checkpoint(path).state
    del state["model"]
    save_checkpoint(run / "checkpoints" / f"step_{step + 1:06d}", state)
    _one_line_exit_2(capsys, ["train", "--resume", str(run)], "has no 'model'")


def test_metrics_lines_that_are_not_objects_are_skipped(tmp_path, capsys):
    run = _train(tmp_path, "r")
    with (run / "metrics.jsonl").open("a") as f:
        f.write('[1, 2]\n"text"\n{"step": "abc"}\n')
    f = (run / "metrics.jsonl").open("ab")
    f.write(b"\xff\xfe{\n")
    f.close()
    assert main(["plot", "--run", str(run)]) == 0
    assert main(["train", "--resume", str(run), "--steps", "25", "--no-progress"]) == 0
