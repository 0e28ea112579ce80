"""`alinea judge`, `alinea eval language-id` and `alinea data redteam` through typer's CliRunner."""

import json

import pytest
from typer.testing import CliRunner

from alinea.cli import app
from alinea.errors import UserError

runner = CliRunner()


def write_jsonl(path, rows):
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    return path


def test_judge_mix_on_records_and_generate_rows(tmp_path):
    data = write_jsonl(tmp_path / "answers.jsonl", [
        {"type": "demonstration", "id": "d1", "prompt": "Écris un avis sur ce film.", "response": "Un film magnifique.",
         "language": "fr"},
        {"type": "comparison", "prompt": "Review the film.", "response_a": "A lovely, moving film.",
         "response_b": "Un film nul.", "preference": "a"},
        {"prompt": [{"role": "user", "content": "Manorata hevitra fohy."}], "response": "Tena tsara.", "finished": True},
    ])
    out = tmp_path / "scores.jsonl"
    result = runner.invoke(app, ["judge", "sentiment_lexicon=1,language=0.5", "--data", str(data), "-o", str(out), "--json"])
    assert result.exit_code == 0, result.output
    summary = json.loads(result.output)
    # lexicon: 0.5, 2/3, -0.5, 0.5; language: 1, 1, 0 (French answer to an English prompt), 1
    expected = [0.5 + 0.5, 2 / 3 + 0.5, -0.5 + 0.0, 0.5 + 0.5]
    rows = [json.loads(line) for line in out.read_text(encoding="utf-8").splitlines()]
    assert [r["score"] for r in rows] == pytest.approx(expected)
    assert [(r["line"], r["index"]) for r in rows] == [(1, 0), (2, 0), (2, 1), (3, 0)]
    assert rows[0]["id"] == "d1" and rows[3]["language"] == "mg"
    assert rows[2]["components"] == {"sentiment_lexicon": pytest.approx(-0.5), "language": 0.0}
    assert summary["n"] == 4 and summary["mean"] == pytest.approx(sum(expected) / 4)
    assert summary["by_language"]["en"]["n"] == 2 and summary["judge"] == "sentiment_lexicon=1,language=0.5"
    table = runner.invoke(app, ["judge", "toxicity", "--data", str(data)])
    assert table.exit_code == 0 and "all" in table.output and "0.000" in table.output


def test_judge_errors(tmp_path):
    data = write_jsonl(tmp_path / "a.jsonl", [{"type": "demonstration", "prompt": "p", "response": "r"}])
    result = runner.invoke(app, ["judge", "sentiment=1,language=x", "--data", str(data)])
    assert isinstance(result.exception, UserError) and "'language=x'" in str(result.exception)
    prompts = write_jsonl(tmp_path / "p.jsonl", [
        {"type": "prompt", "prompt": "p"}, {"type": "demonstration", "prompt": "p", "response": "r"}, {"text": "?"},
    ])
    result = runner.invoke(app, ["judge", "length", "--data", str(prompts)])
    assert isinstance(result.exception, UserError)
    message = str(result.exception)
    assert "2 line(s)" in message and "p.jsonl:1: type:" in message and "p.jsonl:3: record:" in message


def test_language_id_command():
    result = runner.invoke(app, ["eval", "language-id", "--json", "--candidates", "en,fr,es,mg"])
    assert result.exit_code == 0, result.output
    numbers = json.loads(result.output)
    assert numbers["seed"] == 2 and set(numbers["languages"]) == {"en", "fr", "es", "mg"}
    assert all(v["accuracy"] > 0.9 for v in numbers["languages"].values())
    table = runner.invoke(app, ["eval", "language-id", "--candidates", "en,mg"])
    assert table.exit_code == 0 and "│ mg " in table.output and "│ fr " not in table.output


def test_redteam_command(tmp_path):
    out = tmp_path / "rt.jsonl"
    result = runner.invoke(app, ["data", "redteam", "-o", str(out), "--variants", "2"])
    assert result.exit_code == 0 and "red-team prompts" in result.output
    rows = [json.loads(line) for line in out.read_text(encoding="utf-8").splitlines()]
    assert len(rows) > 80 and all(r["tags"][0] in ("harmful", "benign") for r in rows)
    bad = runner.invoke(app, ["data", "redteam", "-o", str(out), "--variants", "0"])
    assert isinstance(bad.exception, UserError)
