"""Stage config parsing: dataclass defaults < --config YAML < command-line flags."""

from dataclasses import dataclass, field

import pytest

from inference.config import parse_config, parse_configs


@dataclass
class StageA:
    lr: float = field(default=1e-4, metadata={"help": "learning rate"})
    name: str = field(default="a", metadata={"help": "name"})
    tags: list[str] = field(default_factory=lambda: ["x"], metadata={"help": "tags"})


@dataclass
class StageB:
    steps: int = field(default=10, metadata={"help": "steps"})


def test_precedence_defaults_then_yaml_then_flags(tmp_path):
    recipe = tmp_path / "r.yaml"
    recipe.write_text("lr: 0.5\nname: from-yaml\n")
    assert parse_config(StageA, []) == StageA()
    cfg = parse_config(StageA, ["--config", str(recipe), "--name", "from-flag", "--tags", "p", "q"])
    assert (cfg.lr, cfg.name, cfg.tags) == (0.5, "from-flag", ["p", "q"])


def test_yaml_with_an_unknown_key_names_it(tmp_path):
    recipe = tmp_path / "r.yaml"
    recipe.write_text("lr: 0.5\nlearning_rate: 1\n")
    with pytest.raises(ValueError, match=r"unknown field\(s\) \['learning_rate'\]"):
        parse_config(StageA, ["--config", str(recipe)])


def test_missing_yaml_and_unknown_flag_are_clear_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        parse_config(StageA, ["--config", str(tmp_path / "nope.yaml")])
    with pytest.raises(SystemExit):
        parse_config(StageA, ["--no_such_flag", "1"])


def test_several_dataclasses_route_yaml_keys_and_flags(tmp_path):
    recipe = tmp_path / "r.yaml"
    recipe.write_text("steps: 3\nlr: 0.25\n")
    a, b = parse_configs((StageA, StageB), ["--config", str(recipe), "--steps", "7"])
    assert (a.lr, b.steps) == (0.25, 7)

    @dataclass
    class Clash:
        lr: float = field(default=0.0, metadata={"help": "clash"})

    with pytest.raises(ValueError, match="share field name"):
        parse_configs((StageA, Clash), [])
