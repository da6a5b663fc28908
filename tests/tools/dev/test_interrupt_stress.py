"""tools/dev/interrupt_stress.py: a few trials through the command, its one-line tally."""
import re

from solov2.tools.dev import interrupt_stress


def test_interrupt_stress_reports_its_tally_and_exits_0_when_nothing_wedged(capsys):
    assert interrupt_stress.main(['--trials', '5', '--overrides', 'test_short=64', 'test_max=64']) == 0
    line = capsys.readouterr().out.splitlines()[-1]
    assert re.fullmatch(r'5 trials, \d interrupted in the call: 0 wedged, 0 returned over 2 s after the signal '
                        r'\(slowest \d+ ms\), 0 budgets short; \d+ s', line), line
