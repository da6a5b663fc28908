"""ONNX graph edits that OpenVINO needs before it reads an exported ``model.onnx``.

OpenVINO's ONNX frontend has no conversion rule for the standard ``DeformConv`` (opset 19,
what paddle2onnx writes for every DCN config: those with ``backbone_dcn`` or ``head_dcn``
set, 2, 3, 4, 7, 10, 11 and 12 today). It does read its own
``org.openvinotoolkit::DeformableConv2D`` (inputs X, offset, W[, mask]; attributes
strides, pads, dilations, group, deformable_groups; no bias), so every
``DeformConv(X, W, offset[, B[, mask]])`` becomes that node plus an ``Add`` of the bias
reshaped to [1, C, 1, 1]. That node reads as OpenVINO's ``DeformableConvolution``-8 with
``bilinear_interpolation_pad`` false, which zeroes every sample whose point lies outside the
feature map, where ONNX (and Paddle) interpolate towards zero padding from up to one pixel
out: ``pad_deformable_sampling`` sets it on the read model (without it, outputs differ on the
border rows and columns as soon as offsets are not zero). The rewrite runs at load time on an in-memory copy, so
``model.onnx`` stays standard ONNX for onnxruntime and other runtimes, and folders exported
before the OpenVINO backend existed run in it unchanged.
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
        inputs = list(node.input) + [''] * (5 - len(node.input))
        x, weight, offset, bias, mask = inputs
        attributes = {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}
        kept = {name: attributes[name] for name in _COPIED if name in attributes}
        kept['deformable_groups'] = attributes.get('offset_group', 1)
        has_bias = bool(bias)
        out = f'{node.output[0]}_no_bias' if has_bias else node.output[0]
        nodes.append(onnx.helper.make_node('DeformableConv2D', [x, offset, weight] + ([mask] if mask else []),
                                           [out], name=f'{node.name or "deform"}_{count}_ov',
                                           domain=OPENVINO_DOMAIN, **kept))
        if has_bias:
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
    count = 0
    for op in model.get_ordered_ops():
        if op.get_type_name() == 'DeformableConvolution':
            op.set_attribute('bilinear_interpolation_pad', True)
            count += 1
    return count


def _integral_scalar(value):
    """The one-element ``Constant`` input ``value`` as a numpy array when it holds a whole
    number, else None."""
    node = value.get_node()
    if node.get_type_name() != 'Constant':
        return None
    data = node.get_data()
    return data if data.size == 1 and float(data.ravel()[0]).is_integer() else None


def _float_size_chain(cast):
    """For a ``Convert`` integer -> float: ([('Multiply' | 'Add', constant array)], the
    ``Convert`` back to an integer type that ends the chain), or None when ``cast`` starts
    no such chain (each link the one consumer of the one before)."""
    node, steps = cast, []
    while True:
        consumers = [target.get_node() for target in node.output(0).get_target_inputs()]
        if len(consumers) != 1:
            return None
        nxt = consumers[0]
        if nxt.get_type_name() == 'Convert' and steps and nxt.get_output_element_type(0).is_integral():
            return steps, nxt
        if nxt.get_type_name() not in ('Multiply', 'Add'):
            return None
        other = nxt.input_value(1 if nxt.input_value(0).get_node() is node else 0)
        constant = _integral_scalar(other)
        if constant is None:
            return None
        steps.append((nxt.get_type_name(), constant))
        node = nxt


def integer_resize_sizes(model) -> int:
    """Compute in integers the output sizes of the resizes by a whole factor (e.g. the mask
    feature head's 2x upsampling) of an ``openvino.Model``, edited in place; returns how many.

    paddle2onnx writes ``F.interpolate(scale_factor=2)``'s size on each axis as a scalar
    picked from the input's shape, cast to float, times 2.0, plus 0.0, cast back to int64.
    OpenVINO's low-precision transformations (run on every model that holds FakeQuantize
    operations: the INT8 IR of tools/quantize.py) take that scalar cast-and-multiply for a
    dequantization and fail on it with dynamic H and W ("Accessing out-of-range dimension").
    The same sizes computed in integers on the one-element slice (before its squeeze) are
    equal for any size (whole factors only: other chains are left alone)."""
    import openvino as ov
    import openvino.opset13 as ops
    count = 0
    for cast in [op for op in model.get_ordered_ops() if op.get_type_name() == 'Convert']:
        source = cast.input_value(0)
        chain = _float_size_chain(cast) if (source.get_element_type().is_integral()
                                            and cast.get_output_element_type(0).is_real()) else None
        if chain is None:
            continue
        steps, end = chain
        squeeze = source.get_node()
        if (squeeze.get_type_name() == 'Squeeze' and end.get_output_partial_shape(0) == ov.PartialShape([1])
                and squeeze.input_value(0).get_partial_shape() == ov.PartialShape([1])):
            source = squeeze.input_value(0)
        kind = end.get_output_element_type(0)
        value = ops.convert(source, kind) if source.get_element_type() != kind else source
        for name, constant in steps:
            operand = ops.constant(constant.astype(kind.to_dtype()))
            value = (ops.multiply if name == 'Multiply' else ops.add)(value, operand)
        for target in list(end.output(0).get_target_inputs()):
            target.replace_source_output(value.output(0))
        count += 1
    if count:
        model.validate_nodes_and_infer_types()
    return count
