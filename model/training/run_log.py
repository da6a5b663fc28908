"""A run folder's CSV logs of training and evaluation (mask AP in percent, 0-100), and a
PNG of both curves."""
import csv
from pathlib import Path

from solov2.data.files import write_together

FEW_POINTS = 30      # a curve of this many points or fewer marks each (one point alone: a line draws nothing)


def significant(value: float, digits: int = 6) -> float:
    """``value`` rounded to ``digits`` significant digits (a CSV cell without float noise
    such as 0.00020810000000000002)."""
    return float(f'{value:.{digits}g}')


class RunLog:
    """``train_log.csv``, ``eval_log.csv`` and ``curves.png`` in ``folder``."""

    def __init__(self, folder: Path):
        self.folder = folder
        self.train_csv, self.eval_csv = folder / 'train_log.csv', folder / 'eval_log.csv'

    @staticmethod
    def _write(path: Path, fields, rows: list) -> None:
        """``rows`` added to the CSV at ``path``, a new file's header ``fields`` first."""
        new = not path.exists()
        with open(path, 'a', newline='') as f:
            writer = csv.DictWriter(f, fieldnames=list(fields))
            if new:
                writer.writeheader()
            writer.writerows(rows)

    def add(self, path: Path, row: dict) -> None:
        """``row`` added to ``path``, ``train_csv`` or ``eval_csv``."""
        self._write(path, row, [row])

    def truncate_after(self, iteration: int) -> None:
        """Drop the rows past ``iteration`` (logged after the checkpoint a resumed run
        continues from), so a resumed run's logs hold each iteration once."""
        for path in (self.train_csv, self.eval_csv):
            if not path.exists():
                continue
            rows = self._rows(path)
            kept = [row for row in rows if int(row['iteration']) <= iteration]
            if len(kept) != len(rows):
                write_together([(path, lambda tmp: self._write(Path(tmp), rows[0], kept))])   # replaced whole

    @staticmethod
    def _rows(path: Path):
        with open(path, newline='') as f:
            return list(csv.DictReader(f))

    def plot(self) -> None:
        """``curves.png`` from the logs, drawn on a figure of its own (matplotlib's Agg
        canvas; pyplot and the process's matplotlib backend are left alone)."""
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
        fig = Figure(figsize=(11, 4))
        FigureCanvasAgg(fig)
        panels = ((self.train_csv, ('loss', 'loss_ins', 'loss_cate'), '{}', {},         # (log, columns, label,
                   {'ylabel': 'loss', 'title': 'training loss'}),                       # line style, axes)
                  (self.eval_csv, ('AP', 'AP50', 'AP75'), 'mask {}', {'marker': 'o'},
                   {'ylabel': 'COCO mask AP (%)', 'title': 'validation', 'ylim': (0, 100)}))
        for axes, (path, keys, label, style, labels) in zip(fig.subplots(1, 2), panels):
            if path.exists():
                rows = self._rows(path)
                minutes = [float(r['minutes']) for r in rows]
                style = style or ({'marker': 'o'} if len(rows) <= FEW_POINTS else {})
                for key in keys:
                    axes.plot(minutes, [float(r[key]) for r in rows], label=label.format(key), **style)
                axes.set(xlabel='training minutes', **labels)
                axes.legend()
        fig.tight_layout()
        write_together([(self.folder / 'curves.png', lambda tmp: fig.savefig(tmp, format='png', dpi=80))])
