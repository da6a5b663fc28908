"""What config/install.py reads of the installed wheels and the machine, without importing Paddle:
two cuDNN wheels of one major (Paddle's cu12 wheels and onnxruntime-gpu's cudnn extra write the same
libcudnn*.so.9) and the NVIDIA driver's version, each stood in for on this CPU machine."""
import pytest

from solov2.config import install
from solov2.config.install import cudnn_install_problem, driver_problem, nvidia_driver


@pytest.mark.parametrize('versions, clash', [
    ({}, None),
    ({'nvidia-cudnn-cu13': '9.13.0.50'}, None),
    ({'nvidia-cudnn-cu11': '8.9.4.19', 'nvidia-cudnn-cu12': '9.5.1.17'}, None),      # libcudnn*.so.8 beside .so.9
    ({'nvidia-cudnn-cu12': '9.5.1.17', 'nvidia-cudnn-cu13': '9.13.0.50'},
     'nvidia-cudnn-cu12 9.5.1.17 and nvidia-cudnn-cu13 9.13.0.50 are both installed'),
])
def test_two_cudnn_wheels_of_one_major_are_named(versions, clash):
    found = cudnn_install_problem(versions)
    assert found is None if clash is None else found.startswith(clash) and 'keep one CUDA stack' in found
    assert cudnn_install_problem() is None or 'both installed' in cudnn_install_problem()    # this machine's


def test_the_nvidia_drivers_version_is_read_from_its_kernel_module(tmp_path):
    version = tmp_path / 'version'
    version.write_text('NVRM version: NVIDIA UNIX x86_64 Kernel Module  580.65.06  Sun Jul 27 07:09:35 UTC 2025\n'
                       'GCC version:  gcc version 12.2.0 (Debian 12.2.0-14)\n')
    assert nvidia_driver(str(version)) == '580.65.06'
    assert nvidia_driver(str(tmp_path / 'none')) is None
    assert driver_problem('580.65.06', '13.0') == '' and driver_problem(None, '13.0') == ''
    assert driver_problem('535.104.05', None) == ''       # a CPU onnxruntime: no CUDA to judge the driver by
    assert 'driver is 535.104.05' in driver_problem('535.104.05', '13.0') and '580 or newer' in driver_problem(
        '535.104.05', '13.0')
    assert driver_problem('535.104.05', '12.8') == ''     # CUDA 12 runs on 525 and newer
    assert 'built for CUDA 12.8, which needs driver 525' in driver_problem('470.57.02', '12.8')


def test_the_driver_check_reads_the_cuda_version_onnxruntime_was_built_for(monkeypatch):
    """onnxruntime's own ``capi.build_and_package_info.cuda_version`` (a GPU build's; the CPU wheel has none)."""
    import onnxruntime.capi.build_and_package_info as info
    monkeypatch.delattr(info, 'cuda_version', raising=False)
    assert install.onnxruntime_cuda() is None
    monkeypatch.setattr(info, 'cuda_version', '12.8', raising=False)
    assert install.onnxruntime_cuda() == '12.8'
