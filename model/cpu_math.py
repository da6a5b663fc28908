"""Fast MKL on AMD CPUs (no Paddle import here), and what ``/proc/cpuinfo`` says (``cpu_name``: the
one description of the CPU that benchmark reports, ``auto``'s records and messages give).

Paddle's CPU wheels' MKL takes a slow generic path on non-Intel CPUs unless ``MKL_DEBUG_CPU_TYPE=5``
(read at its first call) asks for its AVX2 kernels: several times faster on AMD (README, Speed).
Only ``model.tuning.tune_process`` sets it, when a program asks.
"""
import os
import platform
from typing import Dict, List, MutableMapping, Optional

MKL_CPU_TYPE = 'MKL_DEBUG_CPU_TYPE'
AVX2 = '5'
CPUINFO = '/proc/cpuinfo'       # what the functions below read when not given a file
CPU_FLAGS = ('avx2', 'avx512f', 'avx512_vnni', 'avx512_bf16', 'amx_bf16', 'amx_int8')


def cpu_fields(cpuinfo: Optional[str] = None) -> Optional[Dict[str, str]]:
    """The fields of the first CPU in ``cpuinfo`` (default ``CPUINFO``: {'vendor_id': ...,
    'model name': ..., 'flags': ...}); None where it cannot be read."""
    fields: Dict[str, str] = {}
    try:
        with open(cpuinfo or CPUINFO) as f:
            for line in f:
                key, _, value = line.partition(':')
                if key.strip():
                    fields.setdefault(key.strip(), value.strip())
                elif fields:
                    break                        # a blank line ends the first CPU's block
    except OSError:
        return None
    return fields


def cpu_features(cpuinfo: Optional[str] = None) -> List[str]:
    """The flags among ``CPU_FLAGS`` (the CPU features the engines' speed depends on) that the first CPU in
    ``cpuinfo`` (default ``CPUINFO``) has, in that order, e.g. ['avx2']; ['unknown'] where it cannot be read."""
    fields = cpu_fields(cpuinfo)
    if fields is None:
        return ['unknown']
    flags = set(fields.get('flags', '').split())
    return [flag for flag in CPU_FLAGS if flag in flags]


def cpu_name(cpuinfo: Optional[str] = None) -> str:
    """'<model name> (<cpu family, model>; <flags among CPU_FLAGS>)' of ``cpuinfo``'s first CPU (default
    ``CPUINFO``), e.g. 'AMD EPYC (cpu family 26 model 2; avx2 avx512f)'; else the platform's processor."""
    fields = cpu_fields(cpuinfo)
    if fields is None:
        return platform.processor() or 'unknown CPU'
    generation = ' '.join(f'{key} {fields[key]}' for key in ('cpu family', 'model') if key in fields)
    details = '; '.join(filter(None, (generation, ' '.join(cpu_features(cpuinfo)) or 'no AVX2')))
    return f"{fields.get('model name') or 'unknown CPU'} ({details})"


def prefer_avx2_mkl(environ: MutableMapping[str, str] = os.environ, cpuinfo: Optional[str] = None) -> bool:
    """Set ``MKL_DEBUG_CPU_TYPE=5`` in ``environ`` on an AMD CPU (the ``vendor_id`` of the first CPU in
    ``cpuinfo``) unless the user chose a value. Returns True when it set it."""
    if MKL_CPU_TYPE in environ or (cpu_fields(cpuinfo) or {}).get('vendor_id') != 'AuthenticAMD':
        return False
    environ[MKL_CPU_TYPE] = AVX2
    return True
