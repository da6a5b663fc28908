"""ONNX graph edits that OpenVINO needs before it reads an exported ``model.onnx``, made at load time
on an in-memory copy (``model.onnx`` stays standard ONNX). OpenVINO's ONNX frontend cannot convert
the standard ``DeformConv`` (opset 19, every DCN config) but reads its own
``org.openvinotoolkit::DeformableConv2D`` (no bias): each ``DeformConv(X, W, offset[, B[, mask]])``
becomes that node plus an ``Add`` of the bias. Read as ``DeformableConvolution``-8, that node zeroes
samples outside the map where ONNX interpolates towards zero padding from up to one pixel out:
``pad_deformable_sampling`` sets ``bilinear_interpolation_pad`` on the read model.
"""
from typing import List

OPENVINO_DOMAIN = 'org.openvinotoolkit'
_COPIED = ('strides', 'pads', 'dilations', 'group')


def _bias_add(onnx, node, deform_out: str, index: int) -> List:
    """Nodes that add ``node``'s bias input ([C]) to ``deform_out`` ([B, C, H, W])."""
    shape_name = f'{deform_out}_bias_shape'
    reshaped = f'{deform_out}_bias_4d'
    shape = onnx.helper.make_node('Constant', [], [shape_name], name=f'deform_bias_shape_{index}',
                                  value=onnx.helper.make_tensor(shape_name, onnx.TensorProto.INT64,
                                                                [4], [1, -1, 1, 1]))
    reshape = onnx.helper.make_node('Reshape', [node.input[3], shape_name], [reshaped],
                                    name=f'deform_bias_reshape_{index}')
    add = onnx.helper.make_node('Add', [deform_out, reshaped], [node.output[0]], name=f'deform_bias_add_{index}')
    return [shape, reshape, add]


def rewrite_deform_conv(model) -> int:
    """Replace every ONNX ``DeformConv`` of ``model`` (an ``onnx.ModelProto``, edited in
    place) by ``org.openvinotoolkit::DeformableConv2D`` (+ bias ``Add``). Returns the
    number of nodes rewritten."""
    import onnx
    graph = model.graph
    nodes, count = [], 0
    for node in graph.node:
        if node.op_type != 'DeformConv':
            nodes.append(node)
            continue
        x, weight, offset, bias, mask = list(node.input) + [''] * (5 - len(node.input))
        attributes = {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}
        kept = {name: attributes[name] for name in _COPIED if name in attributes}
        kept['deformable_groups'] = attributes.get('offset_group', 1)
        out = f'{node.output[0]}_no_bias' if bias else node.output[0]
        nodes.append(onnx.helper.make_node('DeformableConv2D', [x, offset, weight] + ([mask] if mask else []),
                                           [out], name=f'{node.name or "deform"}_{count}_ov',
                                           domain=OPENVINO_DOMAIN, **kept))
        if bias:
            nodes.extend(_bias_add(onnx, node, out, count))
        count += 1
    if count:
        del graph.node[:]
        graph.node.extend(nodes)
        if not any(o.domain == OPENVINO_DOMAIN for o in model.opset_import):
            model.opset_import.append(onnx.helper.make_opsetid(OPENVINO_DOMAIN, 1))
    return count


def pad_deformable_sampling(model) -> int:
    """Set ``bilinear_interpolation_pad`` on every ``DeformableConvolution`` of an
    ``openvino.Model`` (Paddle / ONNX sampling at the borders). Returns how many."""
    deformable = [op for op in model.get_ordered_ops() if op.get_type_name() == 'DeformableConvolution']
    for op in deformable:
        op.set_attribute('bilinear_interpolation_pad', True)
    return len(deformable)
