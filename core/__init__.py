"""The toolkit's small core, which every layer may import and which imports none of them:
its errors (``errors``: ``InputError``, ``RunError``) and where its files are (``paths``: the
shipped model and pictures, the cache root)."""
