"""Config dataclasses: coercion, constraints, unknown keys; random input yields clean errors only."""

from dataclasses import dataclass

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from zoo_core.config import ConfigError, build_config, fields, option


@dataclass
class Example:
    hidden_size: int = option(8, help="Width.", min=1)
    dropout: float = option(0.1, help="Dropout.", min=0.0, max=1.0, max_exclusive=True)
    mode: str = option("fast", help="Mode.", choices=("fast", "slow"))
    flag: bool = option(False, help="A switch.")
    limit: int | None = option(None, help="Optional.", min=1)

    def validate(self):
        if self.mode == "slow" and self.flag:
            raise ConfigError("flag", "cannot be set with mode slow", "drop --flag")


def test_defaults_and_fields():
    cfg = build_config(Example)
    assert (cfg.hidden_size, cfg.dropout, cfg.mode, cfg.flag, cfg.limit) == (8, 0.1, "fast", False, None)
    assert [f.name for f in fields(Example)] == ["hidden_size", "dropout", "mode", "flag", "limit"]
    assert fields(Example)[4].optional


def test_strings_are_coerced():
    cfg = build_config(Example, {"hidden_size": "16", "dropout": "0.5", "flag": "true", "limit": "none"})
    assert (cfg.hidden_size, cfg.dropout, cfg.flag, cfg.limit) == (16, 0.5, True, None)


@pytest.mark.parametrize("values, field, words", [
    ({"hidden_size": 0}, "hidden_size", ">= 1"),
    ({"hidden_size": "abc"}, "hidden_size", "integer"),
    ({"hidden_size": 2.5}, "hidden_size", "integer"),
    ({"hidden_size": True}, "hidden_size", "integer"),
    ({"dropout": 1.0}, "dropout", "< 1.0"),
    ({"dropout": "nan"}, "dropout", "finite"),
    ({"mode": "fats"}, "mode", "did you mean fast"),
    ({"hiden_size": 3}, "hiden_size", "did you mean hidden_size"),
    ({"mode": "slow", "flag": True}, "flag", "mode slow"),
])
def test_bad_values_name_the_field(values, field, words):
    with pytest.raises(ConfigError) as e:
        build_config(Example, values)
    assert e.value.field == field
    assert words in str(e.value)
    assert "\n" not in str(e.value)


@settings(max_examples=300, deadline=None)
@given(st.dictionaries(st.sampled_from(["hidden_size", "dropout", "mode", "flag", "limit", "other"]),
                       st.one_of(st.none(), st.booleans(), st.integers(), st.floats(), st.text(max_size=8))))
def test_random_input_gives_config_or_config_error(values):
    try:
        cfg = build_config(Example, values)
    except ConfigError as e:
        assert str(e) and "\n" not in str(e)
    else:
        assert isinstance(cfg.hidden_size, int) and cfg.hidden_size >= 1
        assert 0.0 <= cfg.dropout < 1.0
