"""What demo.py does with each picture the runner (``Predictor.run_pictures``) gives back: the drawn
picture or video frame, its COCO-style records, the dump of its network input (tools/postprocess_raw.py)."""
import contextlib
import io
import json
import logging
import os
import sys
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Optional, Tuple, Union

import cv2
import numpy as np

from solov2.core.errors import InputError
from solov2.core.paths import temporary_beside
from solov2.data.files import atomic_write, check_folder, make_folder, same_file, write_image
from solov2.data.labelme import labelme_document
from solov2.data.results import SHOWN_MIN_SCORE, instances_to_coco, write_json
from solov2.data.visualize import draw_bgr
from solov2.model.distributed import SINGLE, Processes
from solov2.model.inference.export_network import OUTPUTS, input_description
from solov2.model.inference.media import VIDEO_SUFFIXES, frame_reader, open_capture, read_frames
from solov2.model.inference.pipeline import IN_FLIGHT_SHARE, PipelineOptions, PipelineStats, default_finish_workers

LOG = logging.getLogger(__name__)


def demo_pipeline(network_on_gpu: bool = False) -> PipelineOptions:
    """How the demo's pictures move: one reading thread, so that two pictures never decode at once, and room
    in flight for twice the predictor's default (``IN_FLIGHT_SHARE`` per finishing worker and one more),
    each picture charged its decoding peak: a 12 MP photo (about 95 MB at its peak) decodes while the one
    before is drawn and written, where the default's room held one alone (docs/speed.md)."""
    workers = default_finish_workers(network_on_gpu=network_on_gpu)
    return PipelineOptions(readers=1, in_flight_bytes=2 * IN_FLIGHT_SHARE * (workers + 1))
MANIFEST = 'manifest.json'


def write_records(records, path: str) -> None:
    """COCO records as JSON at ``path``, by image id and best first within an image; said on stdout."""
    write_json(sorted(records, key=lambda r: (r['image_id'], -r['score'])), path)
    print(f'wrote {len(records)} results to {path}')


class InputDumper:
    """Writes network inputs ([1, 3, H, W] float32 .npy and .bin) as they finish and, on ``close``, a manifest.json
    of them in input order (``image_id``), whatever order they finished in."""

    def __init__(self, folder: str, predictor, number: int):
        self.folder = Path(folder)
        self.folder.mkdir(parents=True, exist_ok=True)
        self.predictor, self.number, self.entries = predictor, number, []

    def dump(self, name: str, image_id: int, file_name: str, source: Path, prepared) -> None:
        """``prepared``'s network input (``pipeline.Prepared``) as ``name``, read from ``source``."""
        batch, meta = np.ascontiguousarray(prepared.chw[None], dtype=np.float32), prepared.meta
        npy = io.BytesIO()
        np.save(npy, batch)
        atomic_write(self.folder / f'{name}.npy', npy.getbuffer())
        atomic_write(self.folder / f'{name}.bin', batch.data)
        self.entries.append({'name': name, 'image_id': image_id, 'file_name': file_name,
                             'source': os.path.relpath(source.resolve(), self.folder),      # movable with its images
                             'input_shape': list(batch.shape), 'npy': f'{name}.npy', 'bin': f'{name}.bin',
                             'orig_hw': list(meta.orig_hw), 'resized_hw': list(meta.resized_hw),
                             'padded_hw': list(meta.padded_hw)})

    def close(self) -> Path:
        cfg = self.predictor.cfg
        self.entries.sort(key=lambda entry: entry['image_id'])
        manifest = {
            'config': self.number, 'config_name': cfg.__name__,
            'class_names': list(cfg.class_names),
            'input': {**input_description(), 'test_short': cfg.test_short, 'test_max': cfg.test_max},
            'outputs': [dict(output, shape=[1, *output['shape'][1:]]) for output in OUTPUTS],
            'output_files': '{name}.{output}.npy, e.g. %s.scores.npy' % (
                self.entries[0]['name'] if self.entries else 'NAME'),
            'postprocess': self.predictor.params.to_json(),
            'images': self.entries,
        }
        path = self.folder / MANIFEST
        atomic_write(path, (json.dumps(manifest, indent=2) + '\n').encode('utf-8'))
        return path


def picture_names(paths) -> dict:
    """File name of each input's drawn picture: ``stem.jpg`` (``a_jpg.jpg``, ``a_png.jpg``, ``_2``: unique)."""
    stems = Counter(path.stem for path in paths)
    names, taken = {}, set()
    for path in paths:
        base = path.stem if stems[path.stem] == 1 else f'{path.stem}_{path.suffix[1:].lower()}'
        name, count = f'{base}.jpg', 1
        while name in taken:
            count += 1
            name = f'{base}_{count}.jpg'
        taken.add(name)
        names[path] = name
    return names


def picture_targets(paths, output: str, source: Optional[str], what: str = 'input') -> dict:
    """{input path: its drawn picture} under the folder ``output`` for ``paths`` found at ``source``; InputError
    when that folder is the input folder or unwritable, or a picture would overwrite an input (``what``)."""
    out_dir = Path(output)
    if source and Path(source).is_dir() and same_file(out_dir, source):
        raise InputError(f'--output {out_dir} is the input folder — the drawn pictures would mix with the '
                         'originals; pick another folder')
    check_folder(out_dir, '--output')
    inputs = {path.resolve() for path in paths}
    targets = {path: out_dir / name for path, name in picture_names(paths).items()}
    for path, target in targets.items():
        if target.resolve() in inputs:
            raise InputError(f'--output {out_dir}: the picture of {path.name} would overwrite the {what} '
                             f'{target} — pick another folder')
    return targets


def labelme_targets(targets: dict, folder: str, copy_images: bool = False) -> dict:
    """{input path: its labelme file in ``folder``, named as its drawn picture}; InputError when one is there
    already (a labelme file, perhaps corrected by hand, is never overwritten), or with ``copy_images`` the
    picture's copy beside it (``labelme_picture``), or the folder is unusable."""
    check_folder(folder, '--save-labelme')
    files = {path: Path(folder) / Path(target.name).with_suffix('.json') for path, target in targets.items()}
    copies = [labelme_picture(path, file) for path, file in files.items()] if copy_images else []
    taken = [str(file) for file in [*files.values(), *copies] if file.exists()]
    if taken:
        raise InputError(f'--save-labelme {folder} holds {taken[0]} already ({len(taken)} of its files would be '
                         'overwritten) — pick an empty folder')
    return files


def labelme_picture(path: Path, file: Path) -> Path:
    """Where ``--labelme-copy-images`` copies the picture ``path`` of the labelme file ``file``: beside it, named
    as it (what ``tools/labelme2coco.py`` looks for when a moved file's imagePath no longer resolves)."""
    return file.with_suffix(Path(path).suffix)


def video_output_path(output: str, video: Optional[str], camera: Optional[int]) -> Path:
    """The .mp4 of a video or camera: ``output`` when it names a video file, else ``<output>/<stem>.mp4``."""
    out = Path(output)
    if out.suffix.lower() in VIDEO_SUFFIXES:
        return out
    return out / ((Path(video).stem if video else f'camera{camera}') + '.mp4')


@dataclass
class DrawOptions:
    """What the demo does with each result: drawn from ``threshold``, kept in ``records``, dumped by ``dumper``."""
    threshold: float = SHOWN_MIN_SCORE
    records: Optional[list] = None
    dumper: Optional[InputDumper] = None
    warmup: int = 2
    batch_size: int = 1
    labelme: Optional[dict] = None          # {input path: its labelme file} (``labelme_targets``)
    labelme_shapes: str = 'polygon'
    labelme_copy: bool = False              # the picture copied beside its labelme file, imagePath its name


def drawn(predictor, draw: DrawOptions, index: int, name: str, prepared, found) -> Tuple[np.ndarray, list, str]:
    """(the BGR picture drawn with ``found``, its records when asked, its line) of the input ``index``."""
    records = [] if draw.records is None else instances_to_coco(
        index, found.masks, found.labels, found.scores, file_name=name, class_names=predictor.engine.class_names)
    line = f'{name}: {len(found)} instances, {int((found.scores >= draw.threshold).sum())} drawn'
    return draw_bgr(prepared.image, found.masks, found.labels, found.scores, predictor.engine.class_names,
                    draw.threshold), records, line


def run_timed(predictor, first, items, read, finish, draw: DrawOptions, keep,
              cost: Callable[[Any], Optional[int]] = lambda item: None) -> PipelineStats:
    """``draw.warmup`` untimed runs, then ``keep(item, result, began)`` for each of ``items``, read ahead
    within the predictor's budget by ``cost(item)`` (``Predictor.run_pictures``); their stats."""
    for item in first if draw.warmup > 0 else ():
        try:
            ready = predictor.prepare(read(item))
        except ValueError:
            continue
        for _ in range(draw.warmup):
            predictor.network([ready] * draw.batch_size)
        break
    began, stats = time.perf_counter(), PipelineStats()
    for item, result in predictor.run_pictures(items, read, finish, batch_size=draw.batch_size, stats=stats,
                                               cost=cost):
        keep(item, result, began)
    return stats


def run_images(predictor, targets: dict, draw: DrawOptions, written: list,
               processes: Processes = SINGLE) -> PipelineStats:
    """Run ``predictor`` over this process's share of ``targets``, one line a picture; unreadable ones skipped."""
    # COCO image ids from 1 in input order, as tools/labelme2coco.py numbers this run's --save-labelme files (the
    # records and the --dump-inputs manifest alike)
    paths, ids = processes.share(list(targets)), {path: index for index, path in enumerate(targets, start=1)}
    for folder in {target.parent for target in targets.values()}:
        make_folder(folder, '--output')
    for folder in {file.parent for file in (draw.labelme or {}).values()}:
        make_folder(folder, '--save-labelme')

    def finish(path, prepared, found):
        if draw.dumper is not None:
            draw.dumper.dump(f'{ids[path]:05d}_{path.stem}', ids[path], path.name, path, prepared)
        picture, records, line = drawn(predictor, draw, ids[path], path.name, prepared, found)
        write_image(targets[path], picture)
        if draw.labelme is not None:        # the drawn instances, the picture relative to the file (or a copy)
            kept, file = found.scores >= draw.threshold, draw.labelme[path]
            image_path = os.path.relpath(path, file.parent)
            if draw.labelme_copy:
                image_path = labelme_picture(path, file).name
                atomic_write(file.parent / image_path, Path(path).read_bytes())
            write_json(labelme_document(found.masks[kept], found.labels[kept], found.scores[kept],
                                        predictor.engine.class_names, image_path, draw.labelme_shapes), file)
        return records, line

    def keep(path, result, began):
        if isinstance(result, Exception):
            print(f'skipped {path}: {result}', file=sys.stderr)
            return
        written.append(path)
        draw.records is None or draw.records.extend(result[0])
        LOG.info(result[1])
    return run_timed(predictor, paths, paths, predictor.read, finish, draw, keep, predictor.reader.cost)


def open_writer(out_path: Path, capture, first) -> tuple:
    """(an mp4v ``cv2.VideoWriter`` for ``out_path`` with the capture's frame rate and size, the hidden file beside
    it that it writes, to rename to ``out_path`` once released)."""
    height, width = first.shape[:2]
    make_folder(out_path.parent, '--output')
    partial = Path(f'{temporary_beside(out_path)}{out_path.suffix}')    # OpenCV picks the container by the suffix
    writer = cv2.VideoWriter(str(partial), cv2.VideoWriter_fourcc(*'mp4v'),
                             capture.get(cv2.CAP_PROP_FPS) or 25.0, (width, height))
    if not writer.isOpened():
        raise InputError(f'cannot write {out_path}')
    return writer, partial


def run_video(predictor, source: Union[str, int], out_path: Path, draw: DrawOptions, written: list,
              max_frames: int = 0) -> PipelineStats:
    """Segment a video file or camera into an annotated mp4 at ``out_path``, the FPS logged once a second; written
    beside it and renamed into place when the video ends or the run stops (the frames so far: a whole video)."""

    def finish(item, prepared, found):
        index, bgr = item
        name = f'frame_{index:06d}'
        if draw.dumper is not None:
            write_image(draw.dumper.folder / f'{name}.png', bgr)
            draw.dumper.dump(name, index, name, draw.dumper.folder / f'{name}.png', prepared)
        return drawn(predictor, draw, index, name, prepared, found)

    def keep(item, result, began):
        if isinstance(result, Exception):
            raise result
        writer.write(result[0])
        written.append(item[0])
        draw.records is None or draw.records.extend(result[1])
        if (now := time.perf_counter()) - shown[0] >= 1.0:
            shown[0] = now
            LOG.info(f'frame {item[0] + 1}: {(item[0] + 1) / (now - began):.1f} FPS')
    capture, first = open_capture(source)
    with contextlib.ExitStack() as release:         # the writer, its file renamed into place, then the capture
        release.callback(capture.release)
        writer, partial = open_writer(out_path, capture, first)
        release.callback(os.replace, partial, out_path)
        release.callback(writer.release)
        shown = [time.perf_counter()]
        frames = read_frames(capture, first, max_frames)
        return run_timed(predictor, [(0, first)], frames, frame_reader(predictor.read), finish, draw, keep)
