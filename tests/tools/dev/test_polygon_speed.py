"""tools/dev/polygon_speed.py: polygons beside RLE and OpenCV's bare trace for a tiled picture's instances,
and the sample pictures' fill-back table."""
import re

from solov2.tools.dev import polygon_speed


def test_polygon_speed_reports_each_min_score_and_the_fill_back_table(capsys):
    assert polygon_speed.main(['--size', '600x400', '--min-scores', '0.3', '0', '--rounds', '1']) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[1] == '600x400 tiled sample pictures, CPU seconds, least of 1 rounds'
    for line, score in zip(lines[2:4], ('0.3', '0')):
        assert re.fullmatch(rf'min_score {score}: \d+ instances \(\d+ Mpx of masks in their boxes\): RLE [\d.]+ s, '
                            r'polygons [\d.]+ s \([\d.]+x RLE\), bare trace [\d.]+ s', line), line
    row = lines[-1].split(' | ')
    assert lines[-3].startswith('| instances | shapes |') and int(row[0].strip('| ')) > 20
    least, median, _ = (float(value) for value in row[-1].strip(' |').split(' / '))
    assert least >= 0.95 and median >= 0.98, row
