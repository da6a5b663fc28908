"""How a knob is declared, once: ``name = Setting(default, doc, group=..., rule=...)`` in
config/base.py, a descriptor (``cfg.depth`` is the plain default; a variant overrides it with a plain
value). Its range check, sidecar group, the ``--verbose`` table and the tests' lists derive from it."""
from typing import Callable, Dict, NamedTuple, Optional, Tuple

from solov2.core.errors import InputError

GROUPS = ('model', 'test')      # recorded in the sidecar; None: training only, not recorded


class Rule(NamedTuple):
    """What a knob accepts: ``ok(value)`` and the same in words, for error messages."""
    ok: Callable[[object], bool]
    text: str


class Setting:
    """One knob: its ``default``, a one-line ``doc``, its sidecar ``group`` ('model': shapes
    the network or fixes what its outputs mean, a command line may not contradict it;
    'test': pre- and post-processing, recorded but free to change; None: not recorded) and
    the ``rule`` its values must pass (None: any value of the default's type)."""

    def __init__(self, default, doc: str, group: Optional[str] = None, rule: Optional[Rule] = None):
        if not isinstance(doc, str) or not doc or doc != doc.strip() or '\n' in doc:
            raise InputError(f'bad Setting doc {doc!r}: a Setting needs a one-line doc — describe the knob')
        if group is not None and group not in GROUPS:
            raise InputError(f"bad Setting group {group!r} — use one of {', '.join(map(repr, GROUPS))} or None")
        self.default, self.doc, self.group, self.rule = default, doc, group, rule
        self.name = ''

    def __set_name__(self, owner, name: str) -> None:
        self.name = name

    def __get__(self, instance, owner=None):
        return self.default

    def __repr__(self) -> str:
        return f'Setting({self.name}={self.default!r})'


def declared_settings(cls: type) -> Dict[str, Setting]:
    """{name: Setting} of every knob declared in ``cls`` and its bases, in declaration
    order (a redeclaration in a subclass replaces the declaration, keeping its place)."""
    found: Dict[str, Setting] = {}
    for klass in reversed(cls.__mro__):
        for name, value in vars(klass).items():
            if isinstance(value, Setting):
                found[name] = value
    return found


def group_names(cls: type, group: str) -> Tuple[str, ...]:
    """Names of the knobs of ``cls`` declared with ``group`` ('model' or 'test'), in order."""
    return tuple(name for name, setting in declared_settings(cls).items() if setting.group == group)
