"""The rule-based reasoning-pattern tagger, its counts and validation, the CLI, and the optional judge."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from spiral.agents.api_agent import ApiError
from spiral.evaluation import patterns
from spiral.evaluation.pattern_judge import PatternJudge, parse_labels

LABELLED = Path(__file__).parent / "data" / "patterns.jsonl"


def test_each_pattern_fires_on_its_own_and_not_on_plain_text() -> None:
    assert patterns.tag("First I look at my card, then I bet.") == {
        "decomposition": True, "expected_value": False, "case_analysis": False}  # fmt: skip
    assert patterns.tag("Calling wins the pot with a chance of 50%.")["expected_value"]
    assert patterns.tag("If they bet I fold; if they check I bet.")["case_analysis"]
    assert not any(patterns.tag("I have the King. I bet.").values())
    assert not patterns.tag("If I fold I lose the ante.")["case_analysis"]  # one branch is not a case split
    assert not patterns.tag("Then I bet.")["decomposition"]  # one marker is not a sequence of steps


def test_validation_on_the_hand_labelled_thoughts() -> None:
    rows = patterns.read_labelled(LABELLED)
    assert len(rows) >= 40 and all(sum(r[1][p] for r in rows) >= 8 for p in patterns.PATTERNS)
    v = patterns.validate(rows)
    for p in patterns.PATTERNS:  # measured: precision 1.00 each; recall 1.00, 0.90, 1.00
        assert v[p]["precision"] >= 0.9 and v[p]["recall"] >= 0.85, (p, v[p])
    always = patterns.validate(rows, lambda t: dict.fromkeys(patterns.PATTERNS, True))
    assert all(always[p]["precision"] < 0.3 for p in patterns.PATTERNS)  # the file is not all positives


def test_counts_carry_wilson_intervals() -> None:
    c = patterns.count(["First do this, then that.", "I bet.", "I call.", "Step 1 then step 2."])
    d = c["decomposition"]
    assert (d["count"], d["n"], d["share"]) == (2, 4, 0.5) and 0 < d["ci_low"] < 0.5 < d["ci_high"] < 1
    assert c["expected_value"]["count"] == 0 and c["expected_value"]["ci_low"] == 0.0
    with pytest.raises(ValueError):
        patterns.count([])


def test_unknown_label_is_an_error(tmp_path: Path) -> None:
    f = tmp_path / "bad.jsonl"
    f.write_text(json.dumps({"text": "x", "labels": ["bluffing"]}) + "\n")
    with pytest.raises(ValueError, match="bluffing"):
        patterns.read_labelled(f)


def _run_folder(tmp_path: Path) -> Path:
    run = tmp_path / "run"
    (run / "eval").mkdir(parents=True)
    rows = [
        {"step": 0, "exploitability": 0.5, "examples": {"J": ["I bet.", "hmm"], "K": ["I call."]}},
        {
            "step": 5,
            "exploitability": 0.4,
            "examples": {"J": ["If they bet I fold. If they check I bet."], "K": ["First bet, then call."]},
        },  # fmt: skip
    ]
    (run / "eval" / "exploitability.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    return run


def test_cli_counts_first_and_last_readouts(tmp_path: Path, capsys) -> None:
    from spiral.cli import main

    out = tmp_path / "counts.json"
    assert main(["eval", "patterns", str(_run_folder(tmp_path)), "--out", str(out), "--validate",
                 str(LABELLED)]) == 0  # fmt: skip
    printed = capsys.readouterr().out
    assert "step 0:" in printed and "step 5:" in printed and "precision" in printed
    data = json.loads(out.read_text())
    assert data[0]["counts"]["case_analysis"]["count"] == 0
    assert (
        data[1]["counts"]["case_analysis"]["count"] == 1 and data[1]["counts"]["decomposition"]["count"] == 1
    )


@pytest.mark.parametrize(
    "args, message",
    [(["nowhere"], "does not exist"), (["RUN", "--steps", "7"], "no think readout at step"),
     (["RUN", "--judge-model", "m"], "--judge-url")],
)  # fmt: skip
def test_cli_bad_input_is_one_line(tmp_path: Path, capsys, args, message) -> None:
    from spiral.cli import main

    run = str(_run_folder(tmp_path))
    code = main(["eval", "patterns", *[run if a == "RUN" else str(tmp_path / a) if a == "nowhere" else a
                                       for a in args]])  # fmt: skip
    err = capsys.readouterr().err
    assert code != 0 and message in err and "Traceback" not in err


def test_parse_labels() -> None:
    assert parse_labels('Sure: ["case_analysis", "decomposition"]') == {
        "decomposition": True, "expected_value": False, "case_analysis": True}  # fmt: skip
    assert not any(parse_labels("[]").values())
    for bad in ("none", '["bluff"]', "[1, 2]"):
        with pytest.raises(ValueError):
            parse_labels(bad)


def test_judge_through_a_local_endpoint(monkeypatch) -> None:
    replies = ['["expected_value"]', "I cannot tell."]
    seen = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802 - http.server naming
            body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            seen.append(body)
            payload = json.dumps({"choices": [{"message": {"content": replies.pop(0)}}]}).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

        def log_message(self, *args) -> None:
            pass

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    try:
        monkeypatch.setenv("SPIRAL_API_KEY", "k")
        judge = PatternJudge("judge-model", f"http://127.0.0.1:{httpd.server_address[1]}/v1")
        assert judge("The EV of calling is 0.") == {
            "decomposition": False, "expected_value": True, "case_analysis": False}  # fmt: skip
        assert seen[0]["temperature"] == 0.0 and "Thought:\nThe EV" in seen[0]["messages"][1]["content"]
        with pytest.raises(ApiError, match="thought 2"):
            judge("I bet.")
    finally:
        httpd.shutdown()
        httpd.server_close()
