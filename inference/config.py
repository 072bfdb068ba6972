"""Stage configs: one dataclass per stage, YAML recipes for overrides, command-line overrides.

Every stage's entry point does::

    cfg = parse_config(SFTConfig)            # reads sys.argv
    cfg = parse_config(SFTConfig, ["--config", "configs/sft/paper.yaml", "--learning_rate", "2e-4"])

Precedence, lowest to highest: dataclass defaults < YAML file given by ``--config`` <
command-line flags. This mirrors TRL's ``TrlParser`` without importing TRL, so the
inference runtime stays light.

Every field is declared with :func:`config_field`, which requires its help text (``--help`` is
generated from it) and may name older spellings (``aliases``) that flags and YAML keys still
accept, e.g. ``confidence_threshold`` is also ``--tau`` / ``tau:``.
"""

from __future__ import annotations

import dataclasses
import sys
from collections.abc import Callable, Sequence
from dataclasses import field
from pathlib import Path
from typing import Any, TypeVar

import yaml

T = TypeVar("T")


def config_field(default: Any = dataclasses.MISSING, help: str = "", *, factory: Callable[[], Any] | None = None,
                 aliases: Sequence[str] = ()) -> Any:
    """A config dataclass field with its help text (required) and optional accepted aliases.

    ``aliases`` are other names for the field: flags (``"--tau"``, ``"--clip-save-folder"``) and,
    without their dashes and with ``-`` read as ``_``, YAML keys.
    """
    if not help:
        raise ValueError("config_field needs help text: every setting says what it does")
    metadata: dict[str, Any] = {"help": help}
    if aliases:
        metadata["aliases"] = [a if a.startswith("-") else f"--{a}" for a in aliases]
    if factory is not None:
        return field(default_factory=factory, metadata=metadata)
    return field(default=default, metadata=metadata)


def _aliases(classes: Sequence[type]) -> dict[str, str]:
    """``{alias as a YAML key: field name}`` over the fields of ``classes``."""
    out: dict[str, str] = {}
    for cls in classes:
        for f in dataclasses.fields(cls):
            for alias in f.metadata.get("aliases", ()):
                out[alias.lstrip("-").replace("-", "_")] = f.name
    return out


def _parser_for(config_cls: type | tuple[type, ...]):
    from transformers import HfArgumentParser

    parser = HfArgumentParser(config_cls)
    parser.add_argument("--config", type=str, default=None,
                        help="YAML recipe whose keys override this stage's defaults; "
                             "command-line flags override the YAML.")
    return parser


def load_yaml_overrides(path: str | Path, config_cls: type | tuple[type, ...]) -> dict[str, Any]:
    """Read a YAML recipe and check that every key is a field of ``config_cls`` (or of one of
    the classes, for a stage configured by several dataclasses)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"config file {str(path)!r} does not exist; pass an existing YAML "
                                f"recipe (see configs/) with --config")
    data = yaml.safe_load(path.read_text()) or {}
    if not isinstance(data, dict):
        raise ValueError(f"config file {str(path)!r} must hold a mapping of field: value, "
                         f"got {type(data).__name__}")
    classes = config_cls if isinstance(config_cls, tuple) else (config_cls,)
    known = {f.name for cls in classes for f in dataclasses.fields(cls)}
    aliases = _aliases(classes)
    for key in [k for k in data if k not in known and k in aliases]:
        name = aliases[key]
        if name in data:
            raise ValueError(f"config file {str(path)!r} sets both {name!r} and its alias {key!r}; keep one")
        data[name] = data.pop(key)
    unknown = sorted(set(data) - known)
    if unknown:
        names = "/".join(cls.__name__ for cls in classes)
        raise ValueError(f"config file {str(path)!r} sets unknown field(s) {unknown} for "
                         f"{names}; known fields: {sorted(known)}")
    return data


def parse_config(config_cls: type[T], argv: Sequence[str] | None = None) -> T:
    """Build ``config_cls`` from defaults, an optional ``--config`` YAML and CLI flags."""
    return parse_configs((config_cls,), argv)[0]


def parse_configs(config_classes: tuple[type, ...], argv: Sequence[str] | None = None) -> tuple[Any, ...]:
    """Like :func:`parse_config` for a stage configured by several dataclasses (e.g. the
    runner's own settings plus the module library's). Field names must not collide."""
    argv = list(sys.argv[1:] if argv is None else argv)
    names = [f.name for cls in config_classes for f in dataclasses.fields(cls)]
    clashes = sorted({n for n in names if names.count(n) > 1})
    if clashes:
        raise ValueError(f"config classes share field name(s) {clashes}; rename one side")
    parser = _parser_for(config_classes)
    pre, _ = parser.parse_known_args(argv)
    if pre.config:
        parser.set_defaults(**load_yaml_overrides(pre.config, config_classes))
    namespace, extra = parser.parse_known_args(argv)
    if extra:
        parser.error(f"unrecognised arguments: {' '.join(extra)}")
    return tuple(cls(**{f.name: getattr(namespace, f.name) for f in dataclasses.fields(cls) if f.init})
                 for cls in config_classes)


def config_to_dict(config: Any) -> dict[str, Any]:
    """A JSON-friendly dict of a config dataclass (for run metadata and W&B)."""
    return {k: (str(v) if isinstance(v, Path) else v) for k, v in dataclasses.asdict(config).items()}
