"""The progress line: live on a terminal, whole lines in a log file."""
import io

from solov2.tools.cli import Progress


class FakeTerminal(io.StringIO):
    def isatty(self):
        return True


def test_progress_in_a_log_file_prints_whole_lines_without_carriage_returns():
    stream = io.StringIO()
    bar = Progress(3, 'predict ', stream=stream, every_s=0.0)
    for _ in range(3):
        bar.update()
    bar.close()
    text = stream.getvalue()
    assert '\r' not in text
    lines = text.splitlines()
    assert len(lines) == 3 and lines[-1].startswith('predict [3/3] 100%')


def test_progress_on_a_terminal_redraws_one_line():
    stream = FakeTerminal()
    bar = Progress(2, stream=stream)
    bar.update()
    bar.update()
    bar.close()
    text = stream.getvalue()
    assert text.startswith('\r') and text.endswith('\n') and text.count('\n') == 1
