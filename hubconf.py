"""paddle.hub entry points: each published SOLOv2 COCO model this project converts
(docs/checkpoints.md) and the shipped shapes model, as a ready ``solov2.Segmenter``.

    import paddle
    seg = paddle.hub.load('path/to/this/checkout', 'shipped_shapes_r18', source='local')
    seg = paddle.hub.load('path/to/this/checkout', 'mmdet_solov2_light_r50_fpn_3x_coco', source='local',
                          backend='dygraph')
    paddle.hub.list('path/to/this/checkout', source='local')     # the entry names

An entry is the published name with '/' written '_'. Its keywords are ``Segmenter``'s
(``backend``, ``device``, ``threads``, ``overrides``, ``cache_dir``, ``mirror``, ...): the
first load downloads, verifies, converts and caches the
publisher's file, later loads read the cache.
"""
from solov2.convert.published import PUBLISHED as _PUBLISHED

dependencies = ['paddle', 'numpy', 'cv2', 'httpx', 'pycocotools']


def _entry(row):
    """The entry point of one published row: a Segmenter of its converted checkpoint."""
    def entry(**options):
        from solov2.api import Segmenter
        return Segmenter(row.name, **options)
    score = f'COCO mask AP {row.mask_ap}' if row.mask_ap is not None else row.note
    entry.__name__ = entry.__qualname__ = row.name.replace('/', '_')
    entry.__doc__ = (f'Segmenter of {row.name} (config {row.config}; {score}; licence: {row.licence}), from '
                     f'{row.url}. Keywords: those of solov2.Segmenter (mirror, cache_dir, backend, ...).')
    return entry


for _row in _PUBLISHED:
    if _row.config is not None and not _row.backbone:
        globals()[_row.name.replace('/', '_')] = _entry(_row)
