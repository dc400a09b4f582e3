"""Progress lines when the stream is not a terminal: whole lines, counts, percent, rate, ETA."""

import io
import re

from vlmrm.core.progress import LINE_PREFIX, Progress, clock, progress

LINE = re.compile(
    r"^\[progress\] (?P<desc>.+): (?P<done>\d+)/(?P<total>\d+) pairs \((?P<pct>\d+)%\), "
    r"(?P<rate>[\d.]+) pairs/s, elapsed \d+:\d\d(, ETA \d+:\d\d)?$"
)


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_log_file_gets_one_line_per_percent_step_and_a_final_line():
    stream = io.StringIO()
    items = list(
        progress(
            range(100),
            "evaluate checkpoint-4 (original)",
            unit="pairs",
            stream=stream,
            interval_s=3600,
            percent_step=25,
        )
    )
    assert items == list(range(100))
    text = stream.getvalue()
    assert "\r" not in text
    lines = text.splitlines()
    assert [LINE.match(line)["done"] for line in lines] == ["25", "50", "75", "100"]
    assert all(LINE.match(line)["desc"] == "evaluate checkpoint-4 (original)" for line in lines)
    assert "ETA" in lines[0] and "ETA" not in lines[-1]
    assert lines[-1].startswith(f"{LINE_PREFIX} evaluate checkpoint-4 (original): 100/100 pairs (100%)")


def test_time_interval_writes_lines_without_a_total():
    stream = io.StringIO()
    bar = Progress(None, "generate", "videos", stream=stream, interval_s=0.0)
    bar.update(3)
    bar.update(2)
    bar.close()
    bar.close()
    lines = stream.getvalue().splitlines()
    assert [line.split(": ")[1].split(" ")[0] for line in lines] == ["3", "5", "5"]
    assert all("%" not in line and "ETA" not in line for line in lines)


def test_terminal_gets_a_tqdm_bar():
    stream = Terminal()
    with Progress(4, "validate", "videos", stream=stream) as bar:
        bar.update(4)
    assert "\r" in stream.getvalue() and "4/4" in stream.getvalue()
    assert LINE_PREFIX not in stream.getvalue()


def test_clock():
    assert clock(5) == "0:05" and clock(125) == "2:05" and clock(3725) == "1:02:05"
