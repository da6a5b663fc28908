"""Where mask AP goes: the COCO error analysis (Hoiem et al., "Diagnosing error in object detectors";
pycocotools' ``analyze``, mmdetection's ``coco_error_analysis``) of result records on a COCO annotation file.

Precision-recall (area all, 100 detections an image) at each step of ``STEPS``, each forgiving one more kind
of error: IoU 0.75 (C75), IoU 0.5 (C50), IoU 0.1 (Loc: localisation errors forgiven), a detection on an object
of another class of the same supercategory ignored (Sim), of any class (Oth), every false positive on the
background removed (BG: precision 1 wherever the recall is reached), every missed object found (FN: precision 1).
The area between two steps' curves is the AP that kind of error costs."""
from __future__ import annotations

import contextlib
import io
import math
from dataclasses import dataclass
from os import PathLike
from pathlib import Path
from typing import Any, Sequence

import numpy as np
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from solov2.data.files import atomic_write
from solov2.data.scoring import by_position, positional_records

STEPS = ('C75', 'C50', 'Loc', 'Sim', 'Oth', 'BG', 'FN')
STEP_MEANINGS = ('precision at IoU 0.75', 'at IoU 0.5', 'at IoU 0.1: localisation errors forgiven',
                 'confusion with a class of the same supercategory forgiven', 'confusion with any class forgiven',
                 'background false positives removed', 'missed objects found')
STEP_COLOURS = ('#b0b0b0', '#4c72b0', '#55a868', '#c44e52', '#8172b2', '#ccb974', '#64b5cd')
MAX_DETECTIONS = 100
NO_SUPERCATEGORY = ('Sim = Loc: no two categories of the annotation file share a supercategory (an empty or missing '
                    'one is none), so no confusion is forgiven as similar; Oth forgives every confusion')


@dataclass
class ErrorAnalysis:
    """``precision`` ``[7, R, K]``: each step's precision at the ``recall`` ``[R]`` thresholds for each of the
    ``names`` ``[K]`` categories; ``scored`` ``[K] bool``: the categories with an object (the others have no AP);
    ``similar``: some categories share a supercategory (else the Sim step forgives nothing: it is Loc's)."""
    recall: np.ndarray
    precision: np.ndarray
    names: list[str]
    scored: np.ndarray
    similar: bool = True

    def ap(self) -> np.ndarray:
        """``[7, K]``: each step's AP (mean precision over recall) per category, NaN where not scored."""
        return np.where(self.scored[None], self.precision.mean(axis=1), np.nan)

    def overall(self) -> np.ndarray:
        """``[7, R]``: each step's precision averaged over the scored categories (zeros when none is)."""
        if not self.scored.any():
            return np.zeros(self.precision.shape[:2])
        return self.precision[:, :, self.scored].mean(axis=2)


def precision_of(gt: COCO, results: COCO, iou_thresholds: Sequence[float],
                 category_ids: Sequence[int] | None = None) -> np.ndarray:
    """``[T, R, K]`` precision of segm ``results`` on ``gt`` at ``iou_thresholds`` (area all, ``MAX_DETECTIONS``;
    -1 where a category has no object), over ``category_ids`` (default all)."""
    with contextlib.redirect_stdout(io.StringIO()):
        evaluator = COCOeval(gt, results, 'segm')
        evaluator.params.iouThrs = np.asarray(iou_thresholds, dtype=np.float64)
        evaluator.params.maxDets = [MAX_DETECTIONS]
        evaluator.params.areaRng, evaluator.params.areaRngLbl = [[0, 1e10]], ['all']
        if category_ids is not None:
            evaluator.params.catIds = list(category_ids)
        evaluator.evaluate()
        evaluator.accumulate()
    return evaluator.eval['precision'][:, :, :, 0, 0]


def with_dataset(like: COCO, annotations: list[dict[str, Any]]) -> COCO:
    """A COCO of ``like``'s images and categories with ``annotations``, indexed quietly."""
    coco = COCO()
    coco.dataset = {**like.dataset, 'annotations': annotations}
    with contextlib.redirect_stdout(io.StringIO()):
        coco.createIndex()
    return coco


def forgiven(gt: COCO, category: int, others: set[int]) -> COCO:
    """``gt`` with the objects of ``others`` made crowd regions of ``category``: a detection of ``category``
    on one of them is ignored, neither a true nor a false positive."""
    return with_dataset(gt, [{**a, 'category_id': category, 'iscrowd': 1, 'ignore': 1} if a['category_id'] in others
                             else a for a in gt.dataset['annotations']])


def supercategory_of(category: dict[str, Any]) -> str | None:
    """The supercategory a category shares with others, None where the file gives none (missing or empty:
    no shared one)."""
    value = category.get('supercategory')
    return value.strip() or None if isinstance(value, str) else None


def analyze_errors(gt: COCO, records: Sequence[dict[str, Any]]) -> ErrorAnalysis:
    """The ``ErrorAnalysis`` of COCO result ``records`` (segmentation as RLE) on ``gt``, both numbered by position
    (``data.scoring.by_position``: an id is a name, 0 too). 'Sim' forgives a confusion only between categories the
    file gives the same (real) supercategory; where none does, Sim is Loc (``ErrorAnalysis.similar``)."""
    gt = by_position(gt)
    category_ids = sorted(gt.getCatIds())
    results = with_dataset(gt, [])
    if records:
        with contextlib.redirect_stdout(io.StringIO()):
            results = gt.loadRes(positional_records(gt, records))
    steps = precision_of(gt, results, (0.75, 0.5, 0.1))
    precision = np.concatenate([steps, np.zeros((4, *steps.shape[1:]))])
    scored = (steps[1] >= 0).any(axis=0)
    supercategory = {c: supercategory_of(gt.cats[c]) for c in category_ids}
    for k, category in enumerate(category_ids):
        mine = with_dataset(results, [a for a in results.dataset['annotations'] if a['category_id'] == category])
        others = set(category_ids) - {category}
        similar = {c for c in others if supercategory[c] is not None and supercategory[c] == supercategory[category]}
        for step, forgive in ((3, similar), (4, others)):
            if mine.dataset['annotations']:
                precision[step, :, k] = precision_of(forgiven(gt, category, forgive), mine, (0.1,), [category])[0, :, 0]
    precision = np.maximum(precision, 0)         # -1 (no object) counts as 0: those categories are not scored
    precision[5] = precision[4] > 0
    precision[6] = 1.0
    names = [gt.cats[c]['name'] for c in category_ids]
    shared = len(set(supercategory.values()) - {None}) < sum(v is not None for v in supercategory.values())
    return ErrorAnalysis(np.linspace(0, 1, 101), precision, names, scored, shared)   # COCOeval's recall thresholds


def error_table(analysis: ErrorAnalysis) -> str:
    """The AP (%) of each step, overall and per category, as a text table ('n/a': no object of it)."""
    width = max(len('mask AP (%)'), *(len(name) for name in analysis.names))
    head = f"{'mask AP (%)':<{width}} " + ' '.join(f'{step:>6}' for step in STEPS)
    rows = [('overall', analysis.overall().mean(axis=1))] + list(zip(analysis.names, analysis.ap().T))
    lines = [f'{name:<{width}} ' + ' '.join(f'{100 * v:6.1f}' if not math.isnan(v) else f'{"n/a":>6}' for v in aps)
             for name, aps in rows]
    folded = [] if analysis.similar else [NO_SUPERCATEGORY]
    return '\n'.join(['error analysis: ' + '; '.join(f'{s} {m}' for s, m in zip(STEPS, STEP_MEANINGS)), *folded,
                      head, *lines])


def write_error_charts(analysis: ErrorAnalysis, folder: str | PathLike[str]) -> list[Path]:
    """One stacked precision-recall chart (PNG) overall and one per scored category, ``errors_overall.png`` and
    ``errors_<name>.png`` in ``folder`` (made if needed), and the table as ``errors.txt``, each file written whole;
    the paths written. Each chart is a figure of its own on matplotlib's Agg canvas (pyplot and the process's
    matplotlib backend are left alone)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    curves = [('overall', analysis.overall())] + [(name, analysis.precision[:, :, k]) for k, name in
                                                  enumerate(analysis.names) if analysis.scored[k]]
    written = []
    for name, precision in curves:
        figure = Figure(figsize=(7.2, 4.5))
        FigureCanvasAgg(figure)
        axis = figure.subplots()
        for step in reversed(range(len(STEPS))):       # the widest area first, each step's drawn over it
            folded = ' (= Loc: no shared supercategory)' if STEPS[step] == 'Sim' and not analysis.similar else ''
            axis.fill_between(analysis.recall, precision[step], color=STEP_COLOURS[step], linewidth=0,
                              label=f'[{precision[step].mean():.3f}] {STEPS[step]}{folded}')
        axis.plot(analysis.recall, precision[0], color='black', linewidth=0.8)
        handles, labels = axis.get_legend_handles_labels()
        axis.legend(handles[::-1], labels[::-1], loc='center left', bbox_to_anchor=(1.02, 0.5), fontsize=8)
        axis.set(xlabel='recall', ylabel='precision', xlim=(0, 1), ylim=(0, 1), title=f'mask errors: {name}')
        figure.tight_layout()
        path = folder / f"errors_{''.join(c if c.isalnum() or c in '-_' else '_' for c in name)}.png"
        png = io.BytesIO()
        figure.savefig(png, format='png', dpi=90)
        atomic_write(path, png.getbuffer())
        written.append(path)
    atomic_write(folder / 'errors.txt', (error_table(analysis) + '\n').encode('utf-8'))
    return [*written, folder / 'errors.txt']
