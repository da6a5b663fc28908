"""The compiled loops (``core.compiled``): kept in numba's cache where a folder can be written, compiled in each
process where none can (a read-only install run by a user without a home), the GIL released while they run, and
numba imported only by a program that makes polygons."""
import os
import subprocess
import sys

from solov2.data import coco_fill, pixel_walks
from tests.helpers import REPO_DIR

LOOPS = (pixel_walks.walked_corners, pixel_walks.traced_toggles, coco_fill.sorted_crossings, coco_fill.column_major,
         coco_fill.toggled_area, coco_fill.merged_area, coco_fill.box_of_runs)

FRESH_PROCESS = """
import cv2
import numpy as np
from solov2.data import coco_fill, pixel_walks, polygons
loops = [loop for module in (pixel_walks, coco_fill) for loop in vars(module).values() if hasattr(loop, 'signatures')]
polygons.compile_tracer()
compiled = [len(loop.signatures) for loop in loops]
field = cv2.resize(np.random.default_rng(0).random((20, 30)), (300, 200)) > 0.5      # parts and holes
for mask in (field, ~field, np.eye(40, dtype=bool), np.ones((1, 1), bool)):
    for tolerance in (0, 1.0, 3.0):
        polygons.mask_polygons(mask, (0, 0, mask.shape[1], mask.shape[0]), tolerance=tolerance)
print(compiled == [len(loop.signatures) for loop in loops], type(pixel_walks.walked_corners._cache).__name__)
"""


def run_fresh(**environment) -> list:
    """``FRESH_PROCESS`` in a new interpreter (the checkout importable): what it printed, as words."""
    done = subprocess.run([sys.executable, '-c', FRESH_PROCESS], cwd=REPO_DIR, capture_output=True, text=True,
                          env={**os.environ, 'PYTHONPATH': str(REPO_DIR), **environment}, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    return done.stdout.split()


def test_compile_tracer_leaves_no_loop_for_a_picture_to_compile_and_the_loops_are_cached():
    """After ``compile_tracer`` in a fresh process, masks of every kind (parts, holes, a diagonal, one pixel) at
    every tolerance compile nothing more; the loops are in numba's cache (beside their module here)."""
    assert run_fresh() == ['True', 'FunctionCache']


def test_where_no_cache_folder_can_be_written_the_loops_are_compiled_in_the_process():
    """numba finding no folder to cache in (its locators narrowed to one that never applies outside IPython, as
    a read-only install run without a home leaves it) raises at the decorator: the loops are then compiled
    without a cache, and the tracer still works."""
    assert run_fresh(NUMBA_CACHE_LOCATOR_CLASSES='IPythonCacheLocator') == ['True', 'NullCache']


def test_each_loop_releases_the_gil_while_it_runs():
    assert all(loop.targetoptions['nogil'] for loop in LOOPS)


def test_numba_is_imported_only_where_polygons_are_made():
    """Every module that makes polygons imports the tracer, but numba (0.2-0.6 s, 60 MB resident) only comes with
    the first polygon: a program that segments, scores or draws does not pay it."""
    code = ('import sys; import solov2.api.instances, solov2.data.results, solov2.data.labelme, solov2.serving.app, '
            'solov2.serving.label_studio; print("numba" in sys.modules); '
            'from solov2.data.polygons import compile_tracer; compile_tracer(); print("numba" in sys.modules)')
    done = subprocess.run([sys.executable, '-c', code], cwd=REPO_DIR, capture_output=True, text=True,
                          env={**os.environ, 'PYTHONPATH': str(REPO_DIR)}, timeout=300)
    assert done.stdout.split() == ['False', 'True'], done.stderr[-3000:]
