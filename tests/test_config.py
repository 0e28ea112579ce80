from pathlib import Path

import pytest

from alinea.config import (
    AlineaConfig,
    apply_override,
    config_from_dict,
    describe_config,
    load_config,
    parse_override_value,
    save_config,
)
from alinea.errors import UserError

REPO = Path(__file__).resolve().parents[1]


def test_every_field_has_help_text():
    rows = describe_config()
    assert len(rows) > 40
    missing = [key for key, _, _, help_text in rows if not help_text]
    assert missing == []


def test_tiny_preset_loads_and_differs_from_defaults():
    cfg = load_config(REPO / "configs" / "tiny.toml")
    assert cfg.model.hidden_size == 192
    assert cfg.pretrain.lr == pytest.approx(2e-3)
    assert cfg.sft.max_steps == 600


@pytest.mark.parametrize(
    ("text", "value"),
    [("3e-4", 3e-4), ("12", 12), ("true", True), ('"a b"', "a b"), ("runs/x", "runs/x"), ('["q", "v"]', ["q", "v"])],
)
def test_override_values_are_read_as_toml_literals(text, value):
    assert parse_override_value(text) == value


def test_override_sets_field_and_int_widens_to_float():
    cfg = AlineaConfig()
    apply_override(cfg, "pretrain.lr=1")
    assert cfg.pretrain.lr == 1.0 and isinstance(cfg.pretrain.lr, float)
    apply_override(cfg, "sft.model=runs/pretrain-1/final")
    assert cfg.sft.model == "runs/pretrain-1/final"


def test_unknown_key_names_it_and_lists_valid_ones():
    with pytest.raises(UserError) as err:
        apply_override(AlineaConfig(), "pretrain.learning_rate=1e-3")
    message = str(err.value)
    assert "pretrain.learning_rate" in message and "lr" in message and "warmup_steps" in message


def test_unknown_section_lists_sections():
    with pytest.raises(UserError, match="Valid sections: demo_data, tokenizer, model"):
        apply_override(AlineaConfig(), "optim.lr=1")


@pytest.mark.parametrize(
    ("override", "expected"),
    [("pretrain.lr=fast", "expects number"), ("pretrain.max_steps=1.5", "expects integer"),
     ("sft.lora=1", "expects true/false"), ("model.init_from=3", "expects string")],
)
def test_wrong_type_names_key_and_type(override, expected):
    with pytest.raises(UserError, match=expected):
        apply_override(AlineaConfig(), override)


def test_malformed_override():
    with pytest.raises(UserError, match="section.field=value"):
        apply_override(AlineaConfig(), "pretrain.lr")


def test_toml_file_errors_name_the_file(tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text("[pretrain]\nlr = \n", encoding="utf-8")
    with pytest.raises(UserError, match="bad.toml: not valid TOML"):
        load_config(bad)
    unknown = tmp_path / "unknown.toml"
    unknown.write_text("[pretrain]\nsteps = 3\n", encoding="utf-8")
    with pytest.raises(UserError, match=r"unknown.toml: unknown config key 'pretrain.steps'"):
        load_config(unknown)
    with pytest.raises(UserError, match="not found"):
        load_config(tmp_path / "missing.toml")
    with pytest.raises(UserError, match="must be a table"):
        config_from_dict({"pretrain": 3})


def test_save_and_load_round_trip(tmp_path):
    cfg = load_config(None, ["pretrain.lr=5e-4", "sft.lora=true", "model.num_layers=3"])
    save_config(cfg, tmp_path / "config.toml")
    assert load_config(tmp_path / "config.toml") == cfg


def test_docs_config_reference_is_current():
    from alinea.config import describe_markdown

    assert (REPO / "docs" / "config.md").read_text(encoding="utf-8") == describe_markdown(), (
        "docs/config.md is stale: regenerate it with `alinea config show --markdown > docs/config.md`"
    )
