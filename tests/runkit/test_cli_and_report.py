from html.parser import HTMLParser

import pytest

from runkit.report import image_html, table_html, write_report
from spiral.cli import main as spiral_main
from transition_matching.cli import main as tm_main


@pytest.mark.parametrize("main", [spiral_main, tm_main])
def test_help_lists_commands(main, capsys):
    with pytest.raises(SystemExit) as e:
        main(["--help"])
    assert e.value.code == 0
    assert "commands" in capsys.readouterr().out


def test_report_is_valid_html_with_png(tmp_path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots()
    ax.plot([0, 1], [1, 0])
    png = tmp_path / "p.png"
    fig.savefig(png)
    out = write_report(
        tmp_path / "report.html", "T", [("curves", image_html(png)), ("t", table_html([{"a": 1.5}]))]
    )

    class P(HTMLParser):
        imgs: list = []

        def handle_starttag(self, tag, attrs):
            if tag == "img":
                self.imgs.append(dict(attrs)["src"])

    p = P()
    p.feed(out.read_text())
    assert len(p.imgs) == 1 and p.imgs[0].startswith("data:image/png;base64,iVBOR")


def test_the_out_of_memory_line_speaks_of_the_programs_own_knobs(capsys):
    from runkit.errors import run_cli

    def oom():
        raise MemoryError

    assert run_cli(oom, "tm") == 3
    err = capsys.readouterr().err
    assert "concurrent games" not in err and "--batch-size" in err
    assert run_cli(oom, "spiral") == 3 and "concurrent games" in capsys.readouterr().err
