"""tools/dev/thread_sharing.py: threads sharing one Segmenter against taking turns, a line a round."""
import re

from solov2.tools.dev import thread_sharing


def test_thread_sharing_reports_both_ways_each_round_and_that_the_answers_are_the_pictures_own(capsys):
    assert thread_sharing.main(['--threads', '3', '--calls', '2', '--rounds', '2']) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[-3] == '3 threads x 2 calls, 640x480; answers equal to the picture alone: True'
    for line, first in zip(lines[-2:], ('shared', 'taking turns')):
        assert re.fullmatch(rf'round \d \({first} first\): [\d.]+ pictures/s shared, [\d.]+ taking turns through a '
                            r'lock \([\d.]+x\), one caller alone [\d.]+ \([\d.]+ ms a call; shared [\d.]+x alone\); '
                            r'[\d.]+ pictures a network run shared', line), line
