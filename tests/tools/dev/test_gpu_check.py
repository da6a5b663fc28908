"""tools/dev/gpu_check.py: its dry run (the same calls on the CPU) passes, so the GPU check cannot rot,
and a failing check is a FAIL line and a nonzero exit code."""
import subprocess
import sys
from pathlib import Path

import pytest

from solov2.model import runtime
from solov2.tools.dev import gpu_check
from tests.helpers import REPO_DIR


def test_the_dry_run_passes_every_check(tmp_path):
    done = subprocess.run([sys.executable, str(Path(REPO_DIR) / 'tools' / 'dev' / 'gpu_check.py'), '--dry-run'],
                          capture_output=True, text=True, timeout=600, cwd=tmp_path)
    lines = done.stdout.strip().splitlines()
    verdicts = {line.split()[1].rstrip(':'): line.split()[0] for line in lines if line.split()[0] in
                ('PASS', 'FAIL', 'SKIP')}
    assert done.returncode == 0, done.stdout + done.stderr
    assert verdicts == {**{name: 'PASS' for name, _ in gpu_check.CHECKS}, 'two-gpu': 'SKIP'}, done.stdout
    assert lines[-1] == 'all checks passed'


def test_a_failing_check_is_one_line_and_the_others_still_run(monkeypatch, tmp_path):
    def failing(setting):
        raise AssertionError('3 of 10 pixels differ')

    def skipped(setting):
        raise gpu_check.Skipped('1 GPU: needs two')
    monkeypatch.setattr(gpu_check, 'CHECKS', (('one', failing), ('two', lambda s: 'fine'), ('three', skipped)))
    lines = []
    setting = gpu_check.Setting('cpu', 1, 64, 1, 1, tmp_path)
    assert gpu_check.run_checks(setting, out=lines.append) == 1
    assert [line.rsplit(' (', 1)[0] for line in lines] == [
        'FAIL one: AssertionError: 3 of 10 pixels differ', 'PASS two: fine', 'SKIP three: 1 GPU: needs two']
    monkeypatch.setattr(gpu_check, 'run_checks', lambda setting, names: 2)
    for switch in ('set_cublas_switch', 'set_cudnn_switch'):     # the process's TF32 left alone
        monkeypatch.setattr(runtime.core, switch, lambda on: None, raising=False)
    assert gpu_check.main(['--dry-run']) == 1


def test_tf32_is_off_only_inside_the_float32_comparisons():
    """The checks run with TF32 as Paddle leaves it, as users do; ``tf32_off`` (inference, dcn)
    puts Paddle's switches back as they were (CPU builds have the switches too)."""
    switches = [name for name in ('cublas', 'cudnn') if hasattr(runtime.core, f'get_{name}_switch')]
    if not switches:
        pytest.skip("this Paddle build has no TF32 switches (Paddle 2.6's CPU wheel): tf32_off leaves it alone")
    before = [getattr(runtime.core, f'get_{name}_switch')() for name in switches]
    with gpu_check.tf32_off('cublas', 'cudnn'):
        assert not any(getattr(runtime.core, f'get_{name}_switch')() for name in switches)
    assert [getattr(runtime.core, f'get_{name}_switch')() for name in switches] == before


def test_paddle_2_on_hopper_is_a_fail(monkeypatch, tmp_path):
    """A Paddle 2.x CUDA wheel on a GPU of compute capability 9.0 is reported not to run there:
    the environment check fails with the fix (a GPU stood in for)."""
    monkeypatch.setattr(gpu_check, 'paddle_install_problem', lambda: None)
    monkeypatch.setattr(gpu_check, 'onnxruntime_install_problem', lambda: None)
    monkeypatch.setattr(gpu_check, 'installed_wheels', lambda: ['paddlepaddle-gpu'])
    monkeypatch.setattr(gpu_check, 'resolve_device', lambda device: 'gpu')
    monkeypatch.setattr(gpu_check.paddle, 'is_compiled_with_cuda', lambda: True)
    monkeypatch.setattr(gpu_check.paddle.device.cuda, 'get_device_capability', lambda number: (9, 0))
    monkeypatch.setattr(gpu_check.paddle, '__version__', '2.6.2')
    with pytest.raises(AssertionError, match='Paddle 2.6.2 is reported not to run on this GPU'):
        gpu_check.check_environment(gpu_check.Setting('gpu', 1, 64, 1, 1, tmp_path))


def test_the_gpu_that_tensorrt_engines_are_keyed_by_is_the_one_paddle_sees(monkeypatch, tmp_path):
    """The driver's libcuda (``cuda_device``, TensorRT's engine folders' key) and Paddle must agree on
    the GPU's compute capability: a mismatch fails the environment check (a GPU stood in for)."""
    for name, value in (('paddle_install_problem', lambda: None), ('onnxruntime_install_problem', lambda: None),
                        ('installed_wheels', lambda: ['paddlepaddle-gpu']), ('resolve_device', lambda device: 'gpu'),
                        ('cuda_device', lambda number: 'NVIDIA L4 sm86')):
        monkeypatch.setattr(gpu_check, name, value)
    monkeypatch.setattr(gpu_check.paddle, 'is_compiled_with_cuda', lambda: True)
    monkeypatch.setattr(gpu_check.paddle.device.cuda, 'get_device_capability', lambda number: (8, 9))
    monkeypatch.setattr(gpu_check.paddle.device.cuda, 'get_device_name', lambda number: 'NVIDIA L4')
    with pytest.raises(AssertionError, match="libcuda names GPU 0 'NVIDIA L4 sm86', Paddle gives .* 8.9"):
        gpu_check.check_environment(gpu_check.Setting('gpu', 1, 64, 1, 1, tmp_path))
    monkeypatch.setattr(gpu_check, 'cuda_device', lambda number: 'NVIDIA L4 sm89')
    assert 'NVIDIA L4 compute capability 8.9' in gpu_check.check_environment(gpu_check.Setting('gpu', 1, 64, 1, 1,
                                                                                                tmp_path))


def test_each_engine_is_held_to_the_tolerance_of_what_it_computes_in():
    """onnxruntime's CUDA provider and Paddle Inference's convolutions run TF32 from Ampere on
    (8.x), TensorRT float16: a 1e-3 float32 tolerance there would be a false FAIL."""
    assert [gpu_check.engine_precision(False, c) for c in (None, (7, 5), (8, 0), (9, 0))] == [
        'float32', 'float32', 'tf32', 'tf32']
    assert gpu_check.engine_precision(True, (8, 9)) == 'float16'
    tolerance = gpu_check.ENGINE_TOLERANCE
    assert tolerance['float32'] < tolerance['tf32'] < tolerance['float16']


def test_a_tensorrt_case_that_does_not_open_is_a_fail(monkeypatch, tmp_path):
    """It was a line inside a PASS ('did not open'): a GPU user would read all checks passed."""
    monkeypatch.setattr(gpu_check, 'export', lambda *args, **kwargs: [])
    monkeypatch.setattr(gpu_check, '_engine_cases', lambda s, kinds: [('onnx', True)])

    def refused(spec, compiled):
        raise gpu_check.BackendError('onnxruntime 1.31 did not start its TensorRT provider')
    monkeypatch.setattr(gpu_check, 'exported_backend', refused)
    lines = []
    assert gpu_check.run_checks(gpu_check.Setting('cpu', 1, 64, 1, 1, tmp_path), ['engines'], lines.append) == 1
    assert lines[0].startswith('FAIL engines: AssertionError: onnx tensorrt did not open: onnxruntime 1.31 did not')


def test_a_tensorrt_entry_without_engines_or_a_temporary_left_is_named(tmp_path):
    """What the tensorrt check reads in the engine cache after an open (entries stood in)."""
    import json
    cache = tmp_path / 'cache'
    good, empty = cache / 'tensorrt-aaaa', cache / 'tensorrt-bbbb'
    for folder in (good, empty, cache / '.tensorrt-cccc.999999999.x1.tmp'):
        folder.mkdir(parents=True)
    for folder in (good, empty):
        (folder / 'cache.json').write_text(json.dumps({'key': {'versions': {}}, 'what': 'TensorRT engines'}))
    (good / 'TensorrtExecutionProvider_TRTKernel_graph_1_sm89.engine').write_bytes(b'1')
    (good / 'TensorrtExecutionProvider_TRTKernel_graph_1_sm89.profile').write_bytes(b'1')
    (empty / 'TensorrtExecutionProvider_TRTKernel_graph_1_sm89.engine').write_bytes(b'1')     # no profile
    engines = gpu_check.ENGINE_FILES['onnx']
    assert gpu_check.entry_problems(cache, engines) == [
        '.tensorrt-cccc.999999999.x1.tmp unfinished', 'tensorrt-bbbb holds no *.engine with its .profile']
    assert gpu_check.entry_problems(tmp_path / 'none', engines) == ['no entry']


def test_two_cudnn_libraries_mapped_are_counted(tmp_path):
    """/proc/<pid>/maps lines of Paddle's cuDNN 9 (cu12 wheel) and onnxruntime's (cu13 wheel), each
    with a sub-library that does not count."""
    lines = []
    for wheel, major in (('nvidia/cudnn', 9), ('nvidia/cu13', 9)):
        folder = tmp_path / wheel / 'lib'
        folder.mkdir(parents=True)
        for name in (f'libcudnn.so.{major}', f'libcudnn_ops.so.{major}'):
            (folder / name).write_bytes(b'')
            lines.append(f'7f00 r-xp 00000000 00:00 1  {folder / name}')
    maps = '\n'.join(lines + ['7f01 r-xp 00000000 00:00 1  /usr/lib/libc.so.6', '7ffd rw-p 0 00:00 0  [stack]'])
    assert gpu_check.cudnn_libraries(maps) == {str(tmp_path / w / 'lib' / 'libcudnn.so.9') for w in (
        'nvidia/cudnn', 'nvidia/cu13')}
    assert gpu_check.cudnn_libraries(lines[0]) == {str(tmp_path / 'nvidia/cudnn/lib/libcudnn.so.9')}


def test_tf32_left_changed_is_a_fail(monkeypatch, tmp_path):
    """A ``tf32_off`` that forgot to put Paddle's switches back (stood in) fails the tf32 check."""
    import contextlib
    state = {'cublas': True}
    monkeypatch.setattr(gpu_check, '_tf32_state', lambda: dict(state))

    @contextlib.contextmanager
    def forgetting(*libraries):
        state['cublas'] = False
        yield
    monkeypatch.setattr(gpu_check, 'tf32_off', forgetting)
    with pytest.raises(AssertionError, match="before {'cublas': True}, after {'cublas': False}"):
        gpu_check.check_tf32(gpu_check.Setting('cpu', 1, 64, 1, 1, tmp_path))


def test_cudnn_counts_per_major_two_majors_pass_two_paths_of_one_fail(monkeypatch, tmp_path):
    """The README's Paddle 2.6 rows map Paddle's cuDNN 8 and onnxruntime-gpu's cuDNN 9 by design: a PASS naming
    both; two paths of one major (two wheels' libcudnn.so.9) are a FAIL naming them (a GPU stood in for)."""
    class Ran:
        def __init__(self, *args, **kwargs):
            pass

        def run_numpy(self, batch):
            return []
    monkeypatch.setattr(gpu_check, 'DygraphBackend', Ran)
    setting = gpu_check.Setting('cpu', 1, 64, 1, 1, tmp_path)
    by_design = {'/usr/lib/x86_64-linux-gnu/libcudnn.so.8.9.7', '/venv/nvidia/cudnn/lib/libcudnn.so.9'}
    monkeypatch.setattr(gpu_check, 'cudnn_libraries', lambda maps: by_design)
    assert gpu_check.cudnn_majors(by_design) == {'8': ['/usr/lib/x86_64-linux-gnu/libcudnn.so.8.9.7'],
                                                 '9': ['/venv/nvidia/cudnn/lib/libcudnn.so.9']}
    assert gpu_check.check_cudnn(setting) == ('cuDNN 8: /usr/lib/x86_64-linux-gnu/libcudnn.so.8.9.7, '
                                              'cuDNN 9: /venv/nvidia/cudnn/lib/libcudnn.so.9')
    twice = {'/venv/nvidia/cudnn/lib/libcudnn.so.9', '/venv/nvidia/cu13/lib/libcudnn.so.9'}
    monkeypatch.setattr(gpu_check, 'cudnn_libraries', lambda maps: twice)
    with pytest.raises(AssertionError, match='cuDNN 9 mapped from 2 paths'):
        gpu_check.check_cudnn(setting)


@pytest.mark.parametrize('absence', [None, 'no tensorrt wheel and no libnvinfer.so.10 on the system'])
def test_the_without_tensorrt_lines_say_real_or_stood_in(monkeypatch, tmp_path, absence):
    """Where TensorRT is really absent the open runs as it is (no stand-in: mode 'absent') and is all the tensorrt
    check does for that engine, and export-no-trt exports with Paddle's own failing call; elsewhere both stand
    in, and the lines say which (a GPU stood in for)."""
    modes = []
    monkeypatch.setattr(gpu_check, '_opener', lambda s, kind, folder, cache, mode: modes.append(mode) or mode)
    monkeypatch.setattr(gpu_check, '_opened', lambda process: ('refused', 0, 'did not start its TensorRT provider'))
    monkeypatch.setattr(gpu_check, 'tensorrt_absence', lambda kind: absence)
    setting = gpu_check.Setting('gpu', 1, 64, 1, 1, tmp_path)
    if absence:
        monkeypatch.setattr(gpu_check, 'exported_backend', lambda spec, compiled: 1 / 0)    # never opened
        line = gpu_check._tensorrt_case(setting, 'onnx', tmp_path)
        assert line == (f'onnx: TensorRT absent, without TensorRT refused (real: {absence}; did not start its '
                        'TensorRT provider)') and modes == ['absent/gpu']
    else:
        line = gpu_check._without_tensorrt(setting, 'onnx', tmp_path, 'gpu', None)
        assert line == ("without TensorRT refused (stood in: its wheel unimportable, Paddle's version call "
                        'failing; did not start its TensorRT provider)') and modes == ['no-tensorrt/gpu']
    import paddle.inference
    real, seen = paddle.inference.get_trt_runtime_version, []
    monkeypatch.setattr(gpu_check, 'DygraphBackend', lambda *args, **kwargs: None)
    monkeypatch.setattr(gpu_check, 'export', lambda *args, **kwargs: seen.append(
        paddle.inference.get_trt_runtime_version is real) or ['line'])
    line = gpu_check.check_export_without_tensorrt(setting)
    assert seen == [bool(absence)] and paddle.inference.get_trt_runtime_version is real
    assert line.endswith(f'(real: {absence})' if absence else "(stood in: Paddle's version call made to fail (it "
                         'loads TensorRT here))')
