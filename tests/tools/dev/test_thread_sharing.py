"""tools/dev/thread_sharing.py: threads sharing one Segmenter against taking turns, in one line."""
import re

from solov2.tools.dev import thread_sharing


def test_thread_sharing_reports_both_ways_and_that_the_answers_are_the_pictures_own(capsys):
    assert thread_sharing.main(['--threads', '3', '--calls', '2']) == 0
    line = capsys.readouterr().out.splitlines()[-1]
    assert re.fullmatch(r'3 threads x 2 calls, 640x480: [\d.]+ pictures/s shared, [\d.]+ taking turns through a lock '
                        r'\([\d.]+x\); [\d.]+ pictures a network run; answers equal to the picture alone: True', line)
