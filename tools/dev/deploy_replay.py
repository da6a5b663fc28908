"""deploy/Dockerfile and deploy/systemd/solov2@.service checked without a container daemon or systemd running:

    python tools/dev/deploy_replay.py --keep /tmp/image      # the Dockerfile's steps replayed in a fresh venv

``instructions`` parses the Dockerfile (continuation lines joined, exec forms as lists); ``replay`` runs its
steps under a folder that stands for the image's root: ENV set, WORKDIR made, ``COPY . .`` the checkout's
tracked files, each RUN in bash with the image's paths under that folder (``python`` the system's python3,
whose venv is fresh: no package of this machine's; pip's cache kept), but the system packages' and the
user's lines (``apt-get``, ``useradd``), which only a real build runs. ``run_cmd`` starts CMD as its USER's
id (when this runs as root) on 127.0.0.1 and a port of its own. ``verify_unit`` runs ``systemd-analyze
verify`` on the unit, its program where the caller says.
"""
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Dict, List, Tuple

ROOT = Path(__file__).resolve().parents[2]
DOCKERFILE = ROOT / 'deploy' / 'Dockerfile'
UNIT = ROOT / 'deploy' / 'systemd' / 'solov2@.service'
IMAGE_ROOT = '/opt/solov2'            # where the image puts everything of its own
NOT_REPLAYED = ('apt-get ', 'useradd ')
SYSTEMD_ANALYZE = shutil.which('systemd-analyze')
# the image's interpreter: the system's python3 (readable by any user, as the base image's is), else this one
BASE_PYTHON = shutil.which('python3', path='/usr/local/bin:/usr/bin') or sys.executable


def instructions(path: Path = DOCKERFILE) -> List[Tuple[str, object]]:
    """(INSTRUCTION, its argument: a list for an exec form, else the text) of each instruction, in order."""
    text = re.sub(r'\\\n\s*', ' ', '\n'.join(line for line in path.read_text().splitlines()
                                             if not line.lstrip().startswith('#')))
    parsed = []
    for line in filter(None, (line.strip() for line in text.splitlines())):
        word, _, rest = line.partition(' ')
        rest = rest.strip()
        parsed.append((word.upper(), json.loads(rest) if rest.startswith('[') else rest))
    return parsed


def env_of(parsed, base: Dict[str, str], root: Path) -> Dict[str, str]:
    """``base`` with the ENV instructions' values, the image's paths under ``root``."""
    env = dict(base)
    for word, text in parsed:
        if word == 'ENV':
            for pair in shlex.split(str(text)):
                name, _, value = pair.partition('=')
                value = re.sub(r'\$(\w+)', lambda match: env.get(match.group(1), ''), value)
                env[name] = value.replace(IMAGE_ROOT, str(root) + IMAGE_ROOT)
    return env


def in_root(text: str, root: Path, user_ids: Dict[str, str]) -> str:
    """A RUN line with the image's paths under ``root``, ``python`` ``BASE_PYTHON``, a user's name its id."""
    text = text.replace(IMAGE_ROOT, str(root) + IMAGE_ROOT)
    text = re.sub(r'(^|&& )python ', lambda match: match.group(1) + shlex.quote(BASE_PYTHON) + ' ', text)
    for name, uid in user_ids.items():
        text = re.sub(rf'\bchown -R {name}\b', f'chown -R {uid}', text)
    return text.replace(' --no-cache-dir', '')


def tracked_files() -> List[str]:
    return subprocess.run(['git', '-C', str(ROOT), 'ls-files', '-z'], capture_output=True, text=True,
                          check=True).stdout.split('\0')[:-1]


def replay(root: Path, log=print) -> Dict[str, object]:
    """The Dockerfile's steps under ``root`` (module docstring): {'env', 'workdir', 'user', 'cmd', 'healthcheck',
    'skipped'}."""
    parsed, env, workdir, user, skipped = instructions(), None, root, None, []
    env = env_of(parsed, {key: value for key, value in os.environ.items() if not key.startswith('SOLOV2_')}, root)
    env.pop('VIRTUAL_ENV', None)
    users = {match.group(2): match.group(1) for _, text in parsed
             for match in re.finditer(r'useradd [^&]*--uid (\d+) (\w+)', str(text))}
    for word, text in parsed:
        if word == 'WORKDIR':
            workdir = root / str(text).lstrip('/')
            workdir.mkdir(parents=True, exist_ok=True)
        elif word == 'COPY':
            if str(text) != '. .':
                raise ValueError(f'COPY {text}: the replay copies the checkout only (COPY . .)')
            for name in tracked_files():
                (workdir / name).parent.mkdir(parents=True, exist_ok=True)
                if (ROOT / name).is_symlink():            # solov2/<part> -> ../<part>
                    (workdir / name).symlink_to(os.readlink(ROOT / name))
                else:
                    shutil.copy2(ROOT / name, workdir / name)
        elif word == 'RUN':
            for part in str(text).split(' && '):
                if part.strip().startswith(NOT_REPLAYED) or part.strip().startswith('rm -rf /var/lib/apt'):
                    skipped.append(part.strip())
                    continue
                line = in_root(part.strip(), root, users)
                log(f'RUN {line}')
                subprocess.run(['bash', '-euo', 'pipefail', '-c', line], cwd=workdir, env=env, check=True)
        elif word == 'USER':
            user = str(text)
    return {'env': env, 'workdir': workdir, 'user': user, 'skipped': skipped,
            'cmd': next(text for word, text in parsed if word == 'CMD'),
            'healthcheck': next(text for word, text in parsed if word == 'HEALTHCHECK')}


def local(command: List[str], port: int) -> List[str]:
    """An exec form with 0.0.0.0 as 127.0.0.1 and port 8000 as ``port``."""
    return [str(port) if word == '8000' else '127.0.0.1' if word == '0.0.0.0' else
            word.replace(':8000/', f':{port}/') for word in command]


def run_cmd(replayed: Dict[str, object], root: Path, port: int, **popen) -> subprocess.Popen:
    """CMD (``local``) started as its USER's id when this runs as root (``setpriv``), in WORKDIR."""
    command = [str(word).replace(IMAGE_ROOT, str(root) + IMAGE_ROOT) for word in local(replayed['cmd'], port)]
    user = replayed['user']
    env = dict(replayed['env'])
    if user and os.geteuid() == 0 and shutil.which('setpriv'):
        command = ['setpriv', f'--reuid={user}', f'--regid={user}', '--clear-groups', *command]
        env['HOME'] = '/nonexistent'          # a system user's, as useradd --no-create-home leaves it
    return subprocess.Popen(command, cwd=replayed['workdir'], env=env, **popen)


def healthcheck_command(replayed: Dict[str, object], port: int) -> List[str]:
    """HEALTHCHECK's CMD (its options dropped), ``local``."""
    text = str(replayed['healthcheck'])
    return local(json.loads(text[text.index('CMD') + 3:].strip()), port)


def verify_unit(program: str, unit: Path = UNIT) -> Tuple[int, str]:
    """``systemd-analyze verify`` of instance 8000 of a copy of ``unit`` whose /opt/solov2/venv/bin/solov2
    is ``program``: (exit code, what it said)."""
    import tempfile
    with tempfile.TemporaryDirectory() as folder:
        copy = Path(folder) / unit.name
        copy.write_text(unit.read_text().replace(f'{IMAGE_ROOT}/venv/bin/solov2', program))
        done = subprocess.run([str(SYSTEMD_ANALYZE), 'verify', copy.name.replace('@', '@8000')], cwd=folder,
                              capture_output=True, text=True)
    return done.returncode, (done.stdout + done.stderr).strip()


def main(argv=None) -> int:
    import argparse
    import tempfile
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--keep', help='replay into this folder and keep it (default: a temporary one)')
    args = parser.parse_args(argv)
    root = Path(args.keep or tempfile.mkdtemp(prefix='solov2-image-'))
    root.mkdir(parents=True, exist_ok=True)
    root.chmod(0o755)
    replayed = replay(root)
    print(f"replayed into {root}; not replayed (a real build runs them): {'; '.join(replayed['skipped'])}")
    return 0


if __name__ == '__main__':
    sys.exit(main())
