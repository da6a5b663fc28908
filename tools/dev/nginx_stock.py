"""deploy/nginx/solov2.conf installed as docs/serving.md says, in a private copy of the distribution's own
/etc/nginx (its nginx.conf, default site, conf.d and sites-enabled) in the package's stock layout, even where
this machine's has the site installed already, run by the system's nginx binary on 127.0.0.1 with its own ports,
pid, logs and temporary folders: the system's nginx is neither edited nor started.

``install`` replays the docs' install lines (``install_lines``) in the copy; ``localize`` then points the
copy at this run's ports and folders (the only change a test makes); ``check`` is ``nginx -t``; ``start``
runs it in the foreground.
"""
import hashlib
import os
import re
import shutil
import socket
import subprocess
import time
from pathlib import Path
from typing import Dict, List, Tuple

ROOT = Path(__file__).resolve().parents[2]
RECIPE = ROOT / 'deploy' / 'nginx' / 'solov2.conf'
DOCS = ROOT / 'docs' / 'serving.md'
SYSTEM = Path('/etc/nginx')
NGINX = shutil.which('nginx') or ('/usr/sbin/nginx' if os.path.exists('/usr/sbin/nginx') else None)
UPSTREAMS = re.compile(r'server 127\.0\.0\.1:(\d+)\b')
INSTALL_MARKER = re.compile(r'<!-- nginx-install: [^>]*-->\n```bash\n(.*?)```', re.S)


def install_lines() -> List[str]:
    """The shell lines of docs/serving.md's install block (its marker says the suite replays it)."""
    block = INSTALL_MARKER.search(DOCS.read_text())
    if block is None:
        raise ValueError(f'{DOCS} has no nginx-install block')
    return [line.split('#')[0].strip() for line in block.group(1).splitlines() if line.split('#')[0].strip()]


def upstream_ports(recipe: str) -> List[int]:
    """The service ports a recipe's upstream names, in order."""
    return [int(port) for port in UPSTREAMS.findall(recipe)]


def package_digests() -> Dict[str, str]:
    """{path: md5} of the nginx package's configuration files as dpkg recorded them at install ({} without
    dpkg)."""
    try:
        said = subprocess.run(['dpkg-query', '-W', '-f=${Conffiles}\n', 'nginx-common'], capture_output=True,
                              text=True, check=True).stdout
    except (OSError, subprocess.CalledProcessError):
        return {}
    return {fields[0]: fields[1] for fields in (line.split() for line in said.splitlines()) if len(fields) >= 2}


def stock_layout(etc: Path) -> None:
    """The copy ``etc`` of /etc/nginx made as the package installs it, whatever this machine's holds: the docs'
    install lines undone (a site of ours removed, the default site enabled again, nginx.conf's connections
    and file limit as shipped); ValueError naming a file that still differs from the package's (dpkg's md5)."""
    for site in (etc / 'sites-enabled').glob('*'):
        if site.name != 'default':
            site.unlink()
    if (etc / 'sites-available' / 'default').is_file() and not (etc / 'sites-enabled' / 'default').exists():
        (etc / 'sites-enabled' / 'default').symlink_to(etc / 'sites-available' / 'default')
    conf = etc / 'nginx.conf'
    text = re.sub(r'^worker_rlimit_nofile [^;]*;\n', '', conf.read_text(), flags=re.M)
    conf.write_text(text.replace('worker_connections 4096;', 'worker_connections 768;'))
    for path, digest in package_digests().items():
        copy = etc / os.path.relpath(path, SYSTEM)
        if path.startswith(str(SYSTEM) + '/') and copy.is_file() and \
                hashlib.md5(copy.read_bytes()).hexdigest() != digest:
            raise ValueError(f"{path} differs from the nginx package's: restore it (apt-get install --reinstall "
                             "-o Dpkg::Options::=--force-confask nginx-common) to run the stock layout")


def copy_system(folder: Path) -> Path:
    """A copy of /etc/nginx in ``folder`` in the package's stock layout (``stock_layout``), its links into
    /etc/nginx pointing into the copy."""
    etc = folder / 'etc-nginx'
    shutil.copytree(SYSTEM, etc, symlinks=True)
    for link in etc.rglob('*'):
        if link.is_symlink() and os.readlink(link).startswith(str(SYSTEM)):
            target = etc / os.path.relpath(os.readlink(link), SYSTEM)
            link.unlink()
            link.symlink_to(target)
    stock_layout(etc)
    (folder / 'log').mkdir(exist_ok=True)
    return etc


def install(folder: Path, lines: List[str], recipe: Path = RECIPE) -> Path:
    """The copy of /etc/nginx with ``lines`` (the docs' install lines) run in it from the checkout's root:
    ``sudo`` dropped, /etc/nginx the copy, ``recipe`` the file they copy; ``nginx -t`` and the reload are
    ``check`` and ``start``'s. Its folder."""
    etc = copy_system(folder)
    run_lines(etc, lines, recipe)
    return etc


def run_lines(etc: Path, lines: List[str], recipe: Path = RECIPE) -> None:
    """``lines`` (the docs' install lines) run in the copy ``etc`` from the checkout's root, as ``install`` runs
    them."""
    for line in lines:
        line = line.replace('sudo ', '').replace(str(SYSTEM), str(etc)).replace('deploy/nginx/solov2.conf',
                                                                                  str(recipe))
        if line.startswith('nginx -t'):
            continue
        subprocess.run(['bash', '-euc', line], cwd=ROOT, check=True, capture_output=True)


def localize(folder: Path, etc: Path, port: int, services: Dict[int, int]) -> None:
    """Point the installed copy at this run: its own listen port on 127.0.0.1 (no IPv6 listener), the
    upstream ports ``services`` ({recipe's port: this run's}), pid, logs and temporary folders under
    ``folder``, and root as nginx's user when run as root."""
    config_files = [etc / 'nginx.conf', *etc.glob('conf.d/*.conf'), *etc.glob('sites-enabled/*'),
                    *etc.glob('modules-enabled/*.conf')]
    for path in {file.resolve() for file in config_files if file.exists()}:
        text = path.read_text().replace(str(SYSTEM) + '/', str(etc) + '/').replace(
            '/var/log/nginx/', f'{folder}/log/').replace('/run/nginx.pid', str(folder / 'nginx.pid'))
        text = re.sub(r'listen\s+\[::\]:80\b[^;]*;', '', text)
        text = re.sub(r'listen\s+80\b', f'listen 127.0.0.1:{port}', text)
        text = UPSTREAMS.sub(lambda match: f'server 127.0.0.1:{services[int(match.group(1))]}', text)
        text = re.sub(r'^user\s+[^;]+;', 'user root;' if os.geteuid() == 0 else '', text, flags=re.M)
        path.write_text(text)
    temporary = ''.join(f'{kind}_temp_path {folder / kind};\n' for kind in ('client_body', 'proxy', 'fastcgi',
                                                                            'uwsgi', 'scgi'))
    (etc / 'conf.d' / 'zz-local-temporary.conf').write_text(temporary)


def trust_balancer(etc: Path, address: str) -> None:
    """The installed site's commented ``real_ip`` lines turned on, trusting ``address`` as the load balancer in
    front (the docs' step for one, its address in place of the example's)."""
    for path in {file.resolve() for file in etc.glob('sites-enabled/*')}:
        text = re.sub(r'#\s*set_real_ip_from\s+[^;\s]+;', f'set_real_ip_from {address};', path.read_text())
        path.write_text(re.sub(r'#\s*(real_ip_header|real_ip_recursive)\b', r'\1', text))


def command(folder: Path, etc: Path, *extra: str) -> List[str]:
    return [str(NGINX), '-p', str(folder), '-c', str(etc / 'nginx.conf'), '-e', str(folder / 'log' / 'error.log'),
            *extra]


def check(folder: Path, etc: Path) -> Tuple[bool, str]:
    """``nginx -t`` of the copy: (passed, what it said)."""
    done = subprocess.run(command(folder, etc, '-t'), capture_output=True, text=True)
    return done.returncode == 0, done.stderr


def start(folder: Path, etc: Path, port: int) -> subprocess.Popen:
    """nginx with the copy in the foreground, once it accepts connections on 127.0.0.1:``port``."""
    process = subprocess.Popen(command(folder, etc, '-g', 'daemon off;'), stderr=subprocess.PIPE)
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        try:
            socket.create_connection(('127.0.0.1', port), 0.2).close()
            return process
        except OSError:
            if process.poll() is not None:
                raise RuntimeError(f'nginx did not start: {process.stderr.read().decode()}') from None
            time.sleep(0.05)
    process.kill()
    raise RuntimeError('nginx did not start within 20 s')


def stop(process: subprocess.Popen) -> None:
    """nginx's quick stop (SIGTERM), waited for."""
    process.terminate()
    try:
        process.wait(30)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()
