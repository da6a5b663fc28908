"""tools/dev/pipeline_threads.py: the threads a Segmenter and the service start, by name, in four lines."""
import time

from solov2 import ModelSpec, Segmenter
from solov2.core.paths import SHIPPED_WEIGHTS
from solov2.tools.dev import pipeline_threads


def test_pipeline_threads_names_the_pools_and_a_closed_segmenter_leaves_none(capsys, monkeypatch):
    """Beside another Segmenter of the host left open (its pools alive: a test process holds a few dozen), the
    tool waits only for its own Segmenter's pools to stop: it once joined every solov2 thread of the process
    for 10 s each (652 s in one suite run)."""
    import threading
    monkeypatch.setattr(threading.Thread, 'start', threading.Thread.start)      # the script wraps it
    with Segmenter(ModelSpec(str(SHIPPED_WEIGHTS), backend='dygraph', threads=1)) as other:
        other(pipeline_threads.SAMPLE_IMAGES + '/shapes_000023.jpg')    # its reader and workers started
        began = time.monotonic()
        assert pipeline_threads.main() == 0
        seconds = time.monotonic() - began
    lines = capsys.readouterr().out.splitlines()[-4:]
    assert lines[0].startswith('Segmenter, one picture: ') and 'solov2-read_N' in lines[0], lines
    assert lines[2] == 'Segmenter closed: none [alive: none]', lines
    assert lines[3].startswith('service, ready and one answer: ') and 'solov2-finish_N' in lines[3], lines
    assert seconds < 35, f'{seconds:.0f} s: it waited for threads not its own'
