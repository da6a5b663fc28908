"""The commands (``solov2 COMMAND``, tools/main.py) and their shared command-line parts (tools/cli.py)."""
if not __name__.startswith('solov2.'):      # one name per module (solov2/__init__.py)
    raise ImportError(f'import solov2.{__name__}, not {__name__}: each module of the toolkit has one name')
