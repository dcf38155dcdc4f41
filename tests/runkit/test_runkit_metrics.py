import json

from runkit.metrics import MetricsLogger, read_metrics


def test_resumed_log_has_no_duplicate_or_lost_lines(tmp_path):
    log = MetricsLogger(tmp_path, tensorboard=False)
    for step in range(1, 8):
        log.log(step, {"train/loss": 1.0 / step})
    log.close()
    # the run crashed after step 7 but its last checkpoint is step 5: steps 6 and 7 are redone
    with (tmp_path / "metrics.jsonl").open("a") as f:
        f.write('{"step": 8, "train/lo')  # a torn line from the crash
    log = MetricsLogger(tmp_path, resume_step=5, tensorboard=False)
    for step in range(6, 11):
        log.log(step, {"train/loss": 1.0 / step})
    log.close()
    steps = [r["step"] for r in read_metrics(tmp_path / "metrics.jsonl")]
    assert steps == list(range(1, 11))


def test_tensorboard_events_and_nan_kept_visible(tmp_path):
    log = MetricsLogger(tmp_path)
    log.log(1, {"train/loss": float("nan"), "rollout/turns": 16})
    log.close()
    row = json.loads((tmp_path / "metrics.jsonl").read_text().splitlines()[0])
    assert row["train/loss"] == "nan" and row["rollout/turns"] == 16
    assert list((tmp_path / "tensorboard").glob("events.out.tfevents.*"))
