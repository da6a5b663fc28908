"""The console command's subcommands (``solov2 COMMAND``, tools/main.py), in a module of their own so that
``tools/cli.py`` can name them in its messages without importing the dispatcher that imports it."""

# command -> (its module under solov2., what it does in one line)
COMMANDS = {
    'demo': ('tools.demo', 'segment pictures, a folder, a video or a camera; save the drawn masks or JSON'),
    'train': ('tools.train', 'train on a COCO-format dataset'),
    'eval': ('tools.eval', 'COCO mask AP of a checkpoint or an exported model'),
    'export': ('tools.export_model', 'export a checkpoint for Paddle Inference, onnxruntime and OpenVINO'),
    'quantize': ('tools.quantize', 'INT8 quantization of an exported model, for OpenVINO'),
    'weights': ('tools.weights', 'the published checkpoints by name: list them, or fetch them now'),
    'cache': ('tools.cache', 'list, prune or clear the cache of exports and converted checkpoints'),
    'convert': ('tools.convert', "a published checkpoint -> this project's, and back to PaddleDetection"),
    'make-shapes': ('tools.make_shapes_dataset', 'write the synthetic shapes dataset (COCO format)'),
    'labelme2coco': ('tools.labelme2coco', 'a folder of labelme JSON files -> a COCO instance file'),
    'postprocess-raw': ('tools.postprocess_raw', "another runtime's raw network outputs -> masks, pictures, JSON"),
    'serve': ('tools.serve', 'serve a model over HTTP'),
}


def commands_by_module() -> dict:
    """{module under ``solov2.``: the words that run it, 'solov2 demo'}."""
    return {module: f'solov2 {name}' for name, (module, _) in COMMANDS.items()}
