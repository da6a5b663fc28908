"""tools/dev/pipeline_threads.py: the threads a Segmenter and the service start, by name, in four lines."""
from solov2.tools.dev import pipeline_threads


def test_pipeline_threads_names_the_pools_and_a_closed_segmenter_leaves_none(capsys, monkeypatch):
    import threading
    monkeypatch.setattr(threading.Thread, 'start', threading.Thread.start)      # the script wraps it
    assert pipeline_threads.main() == 0
    lines = capsys.readouterr().out.splitlines()[-4:]
    assert lines[0].startswith('Segmenter, one picture: ') and 'solov2-read_N' in lines[0], lines
    assert lines[2] == 'Segmenter closed: none [alive: none]', lines
    assert lines[3].startswith('service, ready and one answer: ') and 'solov2-finish_N' in lines[3], lines
