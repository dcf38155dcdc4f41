"""The run report: one HTML page that parses, with real PNGs inlined, tables and transcripts."""

import base64
import io
import json
from html.parser import HTMLParser

import pytest

from runkit.errors import UserError
from spiral.report import build_report

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


class Collector(HTMLParser):
    """Collects <img> sources, headings and the tag balance."""

    def __init__(self):
        super().__init__()
        self.images, self.headings, self.stack, self.errors = [], [], [], []
        self._in_heading = False

    def handle_starttag(self, tag, attrs):
        if tag == "img":
            self.images.append(dict(attrs)["src"])
            return
        if tag in ("meta", "br"):
            return
        self.stack.append(tag)
        self._in_heading = tag in ("h1", "h2", "h3")

    def handle_startendtag(self, tag, attrs):  # <img .../>
        self.handle_starttag(tag, attrs)
        if tag not in ("img", "meta", "br"):
            self.handle_endtag(tag)

    def handle_endtag(self, tag):
        if not self.stack or self.stack[-1] != tag:
            self.errors.append(f"unbalanced </{tag}>")
        else:
            self.stack.pop()
        self._in_heading = False

    def handle_data(self, data):
        if self._in_heading:
            self.headings.append(data)


def parse(path):
    c = Collector()
    c.feed(path.read_text(encoding="utf-8"))
    c.close()
    assert not c.errors and not c.stack, (c.errors, c.stack)
    return c


def decode_png(src):
    prefix = "data:image/png;base64,"
    assert src.startswith(prefix)
    data = base64.b64decode(src[len(prefix) :], validate=True)
    assert data.startswith(PNG_SIGNATURE)
    return data


def make_run(root):
    run = root / "run"
    run.mkdir()
    (run / "config.json").write_text(
        json.dumps({"kind": "spiral", "model": {"name": "tiny"}, "run": {"steps": 6}})
    )
    rows = []
    for step in range(6):
        row = {"step": step, "time": 100.0 + step, "rollout/invalid_rate": 1 / (step + 1), "train/loss": 0.1 * step,
               "rollout/response_chars": 300 - step, "train/note": "text is skipped", "train/nan": "nan"}  # fmt: skip
        if step % 2 == 0:
            row["eval/KuhnPoker-v1/random/win_rate"] = 0.4 + 0.05 * step
            row["eval/KuhnPoker-v1/random/invalid_rate"] = 0.1
        rows.append(json.dumps(row))
    (run / "metrics.jsonl").write_text("\n".join(rows) + "\n{torn")
    games = run / "eval" / "games"
    games.mkdir(parents=True)
    block = {"games": 4, "win_rate": 0.5, "win_ci": [0.15, 0.85], "draw_rate": 0.0, "loss_rate": 0.5,
             "invalid_rate": 0.25, "mean_turns": 3.0, "mean_response_chars": 120.0}  # fmt: skip
    (games / "summary.json").write_text(json.dumps({"kind": "games", "results": {
        "KuhnPoker-v1 vs random": {"all": block, "seat0": {**block, "games": 2}, "seat1": {**block, "games": 2}}}}))  # fmt: skip
    turns = [{"player": 0, "agent": "model", "observation": "You are Player 0 <b>", "response": "\\boxed{bet}"},
             {"player": 1, "agent": "random", "observation": "x" * 5000, "response": "[fold]"}]  # fmt: skip
    records = [{"env_id": "KuhnPoker-v1", "opponent": "random", "seat": 0, "outcome": o, "reason": f"r-{o}",
                "transcript": turns} for o in ("win", "loss", "win", "loss", "win")]  # fmt: skip
    (games / "transcripts.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    reasoning = run / "eval" / "reasoning" / "champ"
    reasoning.mkdir(parents=True)
    task = {"items": 3, "samples": 12, "accuracy": 0.25, "ci": [0.0, 0.5], "wilson": [0.1, 0.5], "boxed_rate": 0.5,
            "mean_response_chars": 800.0, "mean_response_tokens": 200.0, "seconds_per_item": 30.0}  # fmt: skip
    (reasoning / "summary.json").write_text(json.dumps({"suite": "champ", "samples_per_item": 4, "tasks": {
        "Combinatorics": task}, "overall": task, "config": {"model": "tiny", "temperature": 0.6, "top_p": 0.95}}))  # fmt: skip
    return run


def test_report_parses_and_holds_real_pngs_drawn_from_metrics(tmp_path):
    run = make_run(tmp_path)
    path = build_report(run)
    assert path == run / "report.html"
    c = parse(path)
    assert len(c.images) >= 3  # rollout, train, eval/KuhnPoker-v1 curves drawn here
    for src in c.images:
        import matplotlib.image as mpimg

        img = mpimg.imread(io.BytesIO(decode_png(src)), format="png")
        assert img.shape[0] > 100 and img.shape[1] > 100
    text = path.read_text(encoding="utf-8")
    for heading in ("Training curves", "Evaluation during training", "Game evaluation", "Game transcripts",
                    "Reasoning transfer"):  # fmt: skip
        assert any(h.startswith(heading) for h in c.headings), heading
    assert "eval/KuhnPoker-v1/random" in c.headings and "[0.150, 0.850]" in text
    assert text.count("WIN</h3>") == 2 and text.count("LOSS</h3>") == 2  # two wins and two losses shown
    assert "You are Player 0 &lt;b&gt;" in text and "characters cut" in text  # escaped, long turns cut
    assert "Combinatorics" in text and "0.25" in text


def test_report_embeds_existing_plots(tmp_path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    run = make_run(tmp_path)
    (run / "plots").mkdir()
    fig, ax = plt.subplots()
    ax.plot([0, 1], [1, 0])
    fig.savefig(run / "plots" / "win_rate.png")
    plt.close(fig)
    c = parse(build_report(run, tmp_path / "r.html"))
    assert [decode_png(s) for s in c.images] == [(run / "plots" / "win_rate.png").read_bytes()]


def test_empty_run_still_reports_and_bad_folders_are_user_errors(tmp_path):
    run = tmp_path / "fresh"
    run.mkdir()
    (run / "config.json").write_text("{}")
    c = parse(build_report(run))
    assert c.images == []
    with pytest.raises(UserError, match="not a run folder"):
        build_report(tmp_path / "fresh" / "..")
    with pytest.raises(UserError, match="not a folder"):
        build_report(tmp_path / "missing")


def test_report_command(tmp_path, capsys):
    from spiral.cli import main

    run = make_run(tmp_path)
    assert main(["report", str(run), "--out", str(tmp_path / "out.html")]) == 0
    assert "out.html" in capsys.readouterr().out
    assert main(["report", str(tmp_path / "missing")]) == 2


def test_training_transcripts_newest_first(tmp_path):
    from spiral.report import transcript_records

    run = tmp_path / "run"
    (run / "transcripts").mkdir(parents=True)
    (run / "config.json").write_text("{}")

    def game(outcome, text):
        turn = {"player": 0, "agent": "policy", "observation": "obs", "response": text}
        return json.dumps({"env_id": "KuhnPoker-v2", "outcome": outcome, "turns": [turn]}) + "\n"

    (run / "transcripts" / "eval_step_000000.jsonl").write_text(
        game("win", "old win") + game("loss", "old loss")
    )
    (run / "transcripts" / "eval_step_000010.jsonl").write_text(game("win", "new win"))
    (run / "transcripts" / "selfplay.jsonl").write_text(game("draw", "step 1") + game("draw", "step 2"))
    records = transcript_records(run)
    assert [r["turns"][0]["response"] for r in records] == [
        "new win",
        "old win",
        "old loss",
        "step 2",
        "step 1",
    ]
    assert records[0]["source"] == "transcripts/eval_step_000010.jsonl"
    text = build_report(run, transcripts=1).read_text(encoding="utf-8")
    assert "new win" in text and "old loss" in text and "old win" not in text


def test_phase_markdown_lists_each_phase_seat_with_intervals_and_training_time(tmp_path):
    from spiral.cli import main
    from spiral.evaluation.games import GameResult, summarize_games

    run = make_run(tmp_path)
    rows = [json.dumps({"step": 0, "warmup/seconds": 120.0, "warmup/valid_rate_strict_before": 0.0,
                        "warmup/valid_rate_strict_after": 0.5, "warmup/valid_rate_lenient_before": 0.1,
                        "warmup/valid_rate_lenient_after": 0.6})]  # fmt: skip
    rows += [json.dumps({"step": s, "time/step_seconds": 30.0}) for s in (1, 2)]
    (run / "metrics.jsonl").write_text("\n".join(rows) + "\n")
    for folder, wins in (("0_base", 0), ("2_after_selfplay", 3)):
        results = []
        for i in range(8):
            won = i < wins
            results.append(GameResult("KuhnPoker-v2", "random", i % 2, i, "win" if won else "loss",
                                      1.0 if won else -1.0, 1, 1, not won, False, ""))  # fmt: skip
        (run / "eval" / folder).mkdir(parents=True)
        (run / "eval" / folder / "summary.json").write_text(json.dumps(
            {"kind": "games", "step": 0 if wins == 0 else 2,
             "results": {"KuhnPoker-v2 vs random": summarize_games(results)}}))  # fmt: skip
    out = tmp_path / "phases.md"
    assert main(["report", str(run), "--out", str(tmp_path / "r.html"), "--markdown", str(out)]) == 0
    text = out.read_text()
    assert "warm-up 2.0 min + 2 self-play steps 1.0 min = 3.0 min" in text
    assert "before 0.000 / 0.100, after 0.500 / 0.600" in text
    lines = [line for line in text.splitlines() if line.startswith("| after self-play")]
    assert len(lines) == 3  # seat 0, seat 1, all
    assert "| all | 8 | 0.375 [" in lines[2]  # 3 of 8 wins with a Wilson interval
    assert "after warm-up" not in text  # no summary for that phase
    (tmp_path / "x").mkdir()
    bare = make_run(tmp_path / "x")  # its only evaluation is eval/games, no phase folders
    assert main(["report", str(bare), "--markdown", str(tmp_path / "none.md")]) == 2
    assert not (tmp_path / "none.md").exists()


def test_every_value_read_from_a_file_is_escaped(tmp_path):
    evil = "<script>alert(1)</script>"
    run = make_run(tmp_path)
    (run / "config.json").write_text(json.dumps({"kind": "spiral", "model": {"name": evil}, evil: evil}))
    with (run / "metrics.jsonl").open("a") as f:
        f.write("\n" + json.dumps({"step": 7, f"eval/{evil}/x/win_rate": evil, "rollout/note": evil}) + "\n")
    summary = run / "eval" / "reasoning" / "champ" / "summary.json"
    s = json.loads(summary.read_text())
    s.update(samples_per_item=evil, config={"model": evil, "temperature": evil, "top_p": evil})
    s["tasks"] = {
        evil: {**s["tasks"]["Combinatorics"], "mean_response_tokens": evil, "seconds_per_item": evil}
    }
    summary.write_text(json.dumps(s))
    games = run / "eval" / "games" / "summary.json"
    g = json.loads(games.read_text())
    g["results"] = {evil: {"all": {**g["results"]["KuhnPoker-v1 vs random"]["all"], "turns": evil}}}
    games.write_text(json.dumps(g))
    record = {"env_id": evil, "opponent": evil, "seat": evil, "outcome": evil, "reason": evil, "step": evil,
              "transcript": [{"agent": evil, "observation": evil, "response": evil, "invalid": evil}, evil]}  # fmt: skip
    (run / "eval" / "games" / "transcripts.jsonl").write_text(json.dumps(record) + "\n")
    text = build_report(run).read_text(encoding="utf-8")
    assert "<script" not in text and "&lt;script&gt;" in text
    parse(run / "report.html")


def test_phase_markdown_escapes_pipes_from_files(tmp_path):
    from spiral.phases import phases_markdown

    run = make_run(tmp_path)
    (run / "eval" / "0_base").mkdir(parents=True)
    block = {"games": 2, "win_rate": 0.5, "win_ci": [0.1, 0.9], "invalid_rate": 0.0, "invalid_ci": [0, 0.5],
             "mean_reward": 0.0}  # fmt: skip
    (run / "eval" / "0_base" / "summary.json").write_text(json.dumps(
        {"kind": "games", "step": "1|2", "results": {"Kuhn | evil\nline <script>": {"all": block}}}))  # fmt: skip
    row = next(line for line in phases_markdown(run).splitlines() if line.startswith("| base"))
    assert row.count(" | ") == 9 and "Kuhn \\| evil line &lt;script&gt;" in row and "1\\|2" in row
    assert "<script>" not in phases_markdown(run)
    assert row.endswith("| - | - | 0.000 [0.000, 0.500] | 0.000 |")  # no draw / loss rates recorded: '-'


def test_phase_markdown_shows_draw_and_loss_rates_with_their_intervals(tmp_path):
    from spiral.phases import phases_markdown

    run = make_run(tmp_path)
    (run / "eval" / "2_after_selfplay").mkdir(parents=True)
    block = {"games": 10, "win_rate": 0.1, "win_ci": [0.01, 0.4], "draw_rate": 0.6, "draw_ci": [0.3, 0.85],
             "loss_rate": 0.3, "loss_ci": [0.1, 0.6], "invalid_rate": 0.0, "invalid_ci": [0, 0.3],
             "mean_reward": -0.2, "mean_reward_ci": [-0.5, 0.1]}  # fmt: skip
    (run / "eval" / "2_after_selfplay" / "summary.json").write_text(json.dumps(
        {"kind": "games", "step": 7, "results": {"TicTacToe-v0 vs optimal": {"seat1": block}}}))  # fmt: skip
    row = next(line for line in phases_markdown(run).splitlines() if line.startswith("| after self-play"))
    assert row == ("| after self-play | 7 | TicTacToe-v0 vs optimal | 1 | 10 | 0.100 [0.010, 0.400] | "
                   "0.600 [0.300, 0.850] | 0.300 [0.100, 0.600] | 0.000 [0.000, 0.300] | -0.200 [-0.500, 0.100] |")  # fmt: skip


def test_foreign_values_in_readouts_and_leagues_do_not_break_the_report(tmp_path):
    """A string exploitability in eval/exploitability.jsonl and a string `config` in a league.json."""
    run = tmp_path / "run"
    (run / "eval" / "league").mkdir(parents=True)
    (run / "config.json").write_text("{}")
    probs = {"J": 0.1}
    (run / "eval" / "exploitability.jsonl").write_text(
        json.dumps({"step": 0, "exploitability": "abc", "probs": probs}) + "\n"
        + json.dumps({"step": 5, "exploitability": 0.3, "probs": probs}) + "\n"
    )  # fmt: skip
    (run / "eval" / "league" / "league.json").write_text(json.dumps({"config": "x", "games": {"G": {}}}))
    page = build_report(run).read_text()
    assert "cannot be read" in page and "0.30" in page
