"""The exported graph without its region masks, for runtimes that never pad beyond a batch.

The ``regions`` input (``SOLOv2.forward``) costs the backbone and FPN a multiply by a 0/1 mask
before every spatial operation; that mask is all ones when ``regions`` is the batch's own size,
which is all that onnxruntime and OpenVINO without size buckets ever feed. ``without_region_masks``
removes those multiplies from an in-memory ONNX graph: each ``Mul`` of a tensor computed from the
image's values by one computed from ``regions`` and shapes only (no value of the image) becomes its
data input. The crops of the heads stay (full slices then). Exact for ``regions`` = (H, W).
"""
from typing import Set


def _reached(graph, start: str, through_shape: bool) -> Set[str]:
    """Names of the tensors computed from ``start`` (``through_shape`` False: not through a
    ``Shape`` node, whose output holds sizes, not values)."""
    reached = {start}
    for node in graph.node:         # ONNX nodes are in topological order
        if node.op_type == 'Shape' and not through_shape:
            continue
        if any(name in reached for name in node.input):
            reached.update(node.output)
    return reached


def without_region_masks(graph, regions: str, image: str) -> int:
    """Remove the region masks from ``graph`` (an ``onnx.GraphProto``, edited in place) whose
    inputs are named ``regions`` and ``image``; returns how many multiplies were removed (0 for
    a graph without them)."""
    region_made = _reached(graph, regions, through_shape=True)
    valued = _reached(graph, image, through_shape=False)
    renames, kept = {}, []
    for node in graph.node:
        node.input[:] = [renames.get(name, name) for name in node.input]
        if node.op_type == 'Mul' and len(node.input) == 2:
            data, mask = node.input if node.input[0] in valued else node.input[::-1]
            if data in valued and mask in region_made and mask not in valued:
                renames[node.output[0]] = data
                continue
        kept.append(node)
    needed, used = {output.name for output in graph.output}, []
    for node in reversed(kept):          # drop what only the masks used
        if any(name in needed for name in node.output):
            needed.update(node.input)
            used.append(node)
    del graph.node[:]
    graph.node.extend(reversed(used))
    return len(renames)
