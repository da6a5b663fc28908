"""The benchmark report's shared parts, for every benchmark tool (tools/dev/benchmark.py,
tools/dev/postprocess_speed.py, tools/dev/train_speed.py, tools/dev/mixed_speed.py): the one machine line
a section names, and the sections themselves, each between its markers in the report so that a
later run of its tool replaces it and keeps the rest.
"""
import os
from pathlib import Path
from typing import Optional, Tuple

from solov2.core.cache import package_version
from solov2.model.cpu_math import cpu_name

# the libraries whose version a figure depends on: (package, the name the line gives it)
LIBRARIES = (('paddlepaddle', 'Paddle'), ('openvino', 'OpenVINO'), ('onnxruntime', 'onnxruntime'))
Markers = Tuple[str, str]


def machine_line(threads: int, cpuinfo: Optional[str] = None, cores: Optional[int] = None) -> str:
    """The machine a figure was measured on, the same in every section: '<cpu_name>, N cores, T threads,
    Paddle V, OpenVINO V, onnxruntime V' (``threads`` 0: every core; ``cores`` default: this machine's)."""
    cores = cores or os.cpu_count()
    libraries = ', '.join(f"{name} {package_version(package).split('-')[0]}" for package, name in LIBRARIES)
    return f'{cpu_name(cpuinfo)}, {cores} cores, {threads or cores} threads, {libraries}'


def replace_section(text: str, section: str, markers: Markers) -> str:
    """``text`` with its section between ``markers`` replaced by ``section`` (appended if absent)."""
    begin, end = markers
    if begin in text and end in text:
        rest = text[text.index(end) + len(end):].lstrip('\n')
        return text[:text.index(begin)] + section + ('\n' + rest if rest else '')
    return text.rstrip('\n') + '\n\n' + section if text.strip() else section


def existing_section(text: str, markers: Markers) -> str:
    """The section of ``text`` between ``markers`` ('' when it has none)."""
    begin, end = markers
    if begin in text and end in text:
        return text[text.index(begin):text.index(end) + len(end)] + '\n'
    return ''


def section(markers: Markers, title: str, *paragraphs: str) -> str:
    """A section: ``markers[0]``, '## title', the paragraphs (tables included) separated by blank
    lines, ``markers[1]``."""
    return '\n'.join([markers[0], f'## {title}', '', '\n\n'.join(paragraphs), markers[1]]) + '\n'


def write_section(out: str, text: str, markers: Markers) -> Path:
    """Write the section ``text`` between ``markers`` into the report ``out`` (a path without suffix:
    ``out``.md, made if absent), keeping the rest of it; the report's path."""
    report = Path(out).with_suffix('.md')
    report.parent.mkdir(parents=True, exist_ok=True)
    report.write_text(replace_section(report.read_text() if report.is_file() else '', text, markers))
    return report


def command_line(script: str, argv) -> str:
    """'python <script> <argv...>': the command a section says it came from."""
    return ' '.join(['python', script, *argv])
