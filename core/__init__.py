"""The toolkit's small core, which every layer may import and which imports none of them:
its errors (``errors``: ``InputError``, ``RunError``) and where its files are (``paths``: the
shipped model and pictures, the cache root)."""
if not __name__.startswith('solov2.'):      # one name per module (solov2/__init__.py)
    raise ImportError(f'import solov2.{__name__}, not {__name__}: each module of the toolkit has one name')
