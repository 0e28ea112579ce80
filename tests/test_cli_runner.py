"""The typer app through typer's CliRunner (the in-process way): happy paths and the error object for bad input."""

import json

from typer.testing import CliRunner

from alinea.cli import app
from alinea.errors import UserError

runner = CliRunner()


def test_help_lists_every_command():
    result = runner.invoke(app, ["--help"], prog_name="alinea")
    assert result.exit_code == 0
    for command in ("pretrain", "sft", "generate", "demo", "data", "tokenizer", "eval", "bench", "config"):
        assert command in result.output


def test_config_show_through_runner():
    result = runner.invoke(app, ["config", "show", "--markdown", "--set", "pretrain.lr=0.5"])
    assert result.exit_code == 0
    assert "| `lr` | number | `0.5` |" in result.output


def test_validate_and_stats_through_runner(tmp_path):
    path = tmp_path / "c.jsonl"
    rows = [
        {"type": "comparison", "prompt": "Hi", "response_a": "Hello", "response_b": "Go away", "preference": "a",
         "strength": 2, "annotator": "ann-1"},
        {"type": "comparison", "prompt": "Bye", "response_a": "See you", "response_b": "Bye!", "preference": "tie"},
    ]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    result = runner.invoke(app, ["data", "validate", str(path)])
    assert result.exit_code == 0 and "2 records" in result.output and "OK" in result.output
    stats = runner.invoke(app, ["data", "stats", str(path), "--json"])
    assert stats.exit_code == 0
    numbers = json.loads(stats.output)
    assert numbers["n_records"] == 2 and numbers["types"]["comparison"] == 2
    assert numbers["comparisons"]["preference"] == {"a": 1, "b": 0, "tie": 1}


def test_user_error_surfaces_as_the_exception(tmp_path):
    result = runner.invoke(app, ["data", "stats", str(tmp_path / "missing.jsonl")])
    assert result.exit_code != 0
    assert isinstance(result.exception, UserError)
    assert "missing.jsonl" in str(result.exception)
