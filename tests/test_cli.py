"""The `alinea` command line, run end to end through `alinea.cli.main` (the real entry point).

Every test goes through `main()` with `sys.argv` patched, so user mistakes are checked the way a person meets them:
exit code 2, one paragraph on stderr, no traceback. Training commands use the tiny overrides of `conftest.py`.
"""

from __future__ import annotations

import gzip
import json
import math
import shutil
from pathlib import Path

import pytest

from alinea.data.jsonl import read_records
from alinea.data.records import Comparison, Demonstration
from tests.conftest import REPO_ROOT, TINY_MODEL_OVERRIDES, RunCli, tiny_overrides

TINY_TOML = REPO_ROOT / "configs" / "tiny.toml"



def sets(overrides: list[str]) -> list[str]:
    """`--set` options for each override."""
    return [item for override in overrides for item in ("--set", override)]


def flat(text: str) -> str:
    """Whitespace collapsed, so that assertions do not depend on where the console wrapped a line."""
    return " ".join(text.split())


def assert_user_error(code: int, out: str, err: str, *needles: str) -> None:
    """Exit code 2, no traceback, and every needle in the (unwrapped) error text."""
    assert code == 2, (code, out, err)
    assert "Traceback" not in out + err
    for needle in needles:
        assert needle in err, (needle, err)


def write_jsonl(path: Path, rows: list[object]) -> Path:
    """Dicts become JSON lines; strings are written as they are."""
    text = "".join(
        (row if isinstance(row, str) else json.dumps(row, ensure_ascii=False)) + "\n" for row in rows
    )
    path.write_text(text, encoding="utf-8")
    return path


def only_dir(parent: Path, prefix: str) -> Path:
    runs = sorted(p for p in parent.iterdir() if p.is_dir() and p.name.startswith(prefix))
    assert len(runs) == 1, runs
    return runs[0]


# ---------------------------------------------------------------------------------------------------------------------
# --help

COMMANDS = [
    [],
    ["data", "validate"],
    ["data", "import"],
    ["data", "export"],
    ["data", "stats"],
    ["data", "demo"],
    ["tokenizer", "train"],
    ["pretrain"],
    ["sft"],
    ["generate"],
    ["eval", "perplexity"],
    ["bench", "pretrain"],
    ["config", "show"],
    ["demo"],
]


@pytest.mark.parametrize("command", COMMANDS, ids=lambda c: " ".join(c) or "alinea")
def test_help_shows_examples_one_per_line(run_cli: RunCli, command: list[str]) -> None:
    code, out, err = run_cli(*command, "--help")
    assert code == 0, err
    assert "Usage: alinea" in out
    assert "Example" in out
    # The examples keep their own lines (not rewrapped into one paragraph): each starts with "alinea".
    lines = out.splitlines()
    start = next(i for i, line in enumerate(lines) if line.strip().startswith("Example"))
    assert lines[start].strip() in ("Example:", "Examples:")
    examples = []
    for line in lines[start + 1 :]:
        if not line.strip():
            break
        examples.append(line.strip())
    assert examples and all(example.startswith("alinea ") for example in examples), examples
    if command:
        assert examples[0].startswith("alinea " + " ".join(command))


@pytest.mark.parametrize("group", ["data", "tokenizer", "eval", "bench", "config"])
def test_group_help_lists_its_commands(run_cli: RunCli, group: str) -> None:
    code, out, _ = run_cli(group, "--help")
    assert code == 0
    expected = {c[1] for c in COMMANDS if len(c) == 2 and c[0] == group}
    assert expected and all(name in out for name in expected)


def test_unknown_option_is_a_usage_error_without_traceback(run_cli: RunCli) -> None:
    code, out, err = run_cli("data", "validate", "--bogus", "x.jsonl")
    assert_user_error(code, out, err, "No such option: --bogus")


# ---------------------------------------------------------------------------------------------------------------------
# data validate

GOOD_DEMO = {"type": "demonstration", "prompt": "Name a prime number.", "response": "11 is prime."}


def test_validate_good_file(run_cli: RunCli, tmp_path: Path) -> None:
    path = write_jsonl(
        tmp_path / "good.jsonl", [GOOD_DEMO, {"type": "prompt", "prompt": "Bonjour ?", "language": "fr"}]
    )
    code, out, err = run_cli("data", "validate", path)
    assert code == 0, err
    assert "2 records OK" in flat(out)


def test_validate_reports_every_bad_line(run_cli: RunCli, tmp_path: Path) -> None:
    path = write_jsonl(
        tmp_path / "bad.jsonl",
        [
            GOOD_DEMO,
            '{"type": "demonstration", "prompt": "x",',  # not JSON
            {"type": "demonstration", "prompt": "Say hi."},  # no response
            {
                "type": "comparison",
                "prompt": "p",
                "response_a": "a",
                "response_b": "b",
                "preference": "a",
                "strength": True,
            },
            "",
            {"type": "demonstration", "prompt": "p", "response": "r", "colour": "red"},
        ],
    )
    code, out, err = run_cli("data", "validate", path)
    assert_user_error(
        code,
        out,
        err,
        f"{path}:2: json:",
        f"{path}:3: response:",
        f"{path}:4: strength:",
        f"{path}:6: colour:",
    )
    assert f"{path}:1:" not in err
    assert "4 of 5 lines invalid" in flat(err)


def test_validate_expected_type(run_cli: RunCli, tmp_path: Path) -> None:
    path = write_jsonl(tmp_path / "demos.jsonl", [{"prompt": "p", "response": "r"}])
    assert run_cli("data", "validate", path)[0] == 2  # no type, none expected
    code, out, err = run_cli("data", "validate", path, "--type", "demonstration")
    assert code == 0, err
    assert "1 records OK" in flat(out)


def test_validate_not_utf8(run_cli: RunCli, tmp_path: Path) -> None:
    path = tmp_path / "latin1.jsonl"
    path.write_bytes(json.dumps(GOOD_DEMO).encode() + b'\n{"type": "prompt", "prompt": "caf\xe9"}\n')
    code, out, err = run_cli("data", "validate", path)
    assert_user_error(code, out, err, f"{path}:2: encoding: expected UTF-8 text, found byte 0xe9")


def test_validate_missing_file(run_cli: RunCli, tmp_path: Path) -> None:
    path = tmp_path / "nope.jsonl"
    code, out, err = run_cli("data", "validate", path)
    assert_user_error(code, out, err, "error:", str(path), "does not exist")


def test_validate_several_files_fails_if_any_is_bad(run_cli: RunCli, tmp_path: Path) -> None:
    good = write_jsonl(tmp_path / "good.jsonl", [GOOD_DEMO])
    bad = write_jsonl(
        tmp_path / "bad.jsonl", [{"type": "thumb", "prompt": "p", "response": "r", "thumb": "sideways"}]
    )
    code, out, err = run_cli("data", "validate", good, bad)
    assert_user_error(code, out, err, f"{bad}:1: thumb:")
    assert "1 records OK" in flat(out)


# ---------------------------------------------------------------------------------------------------------------------
# data import

HH_ROWS = [
    {
        "chosen": "\n\nHuman: What is 2+2?\n\nAssistant: 4.",
        "rejected": "\n\nHuman: What is 2+2?\n\nAssistant: 5.",
    },
    {
        "chosen": "\n\nHuman: Hi.\n\nAssistant: Hello!\n\nHuman: Name a colour.\n\nAssistant: Blue.",
        "rejected": "\n\nHuman: Hi.\n\nAssistant: Hello!\n\nHuman: Name a colour.\n\nAssistant: No.",
    },
]
HH_EMPTY_REPLY = {"chosen": "\n\nHuman: Hi.\n\nAssistant:", "rejected": "\n\nHuman: Hi.\n\nAssistant: Hello."}


def test_import_hh_rlhf(run_cli: RunCli, tmp_path: Path) -> None:
    src, out_path = write_jsonl(tmp_path / "hh.jsonl", HH_ROWS), tmp_path / "out" / "hh-records.jsonl"
    code, out, err = run_cli("data", "import", src, "-o", out_path)
    assert code == 0, err
    assert "2 records (2 comparison)" in flat(out)
    records = read_records(out_path)
    assert [type(r) for r in records] == [Comparison, Comparison]
    first, second = records
    assert first.prompt_messages() == [{"role": "user", "content": "What is 2+2?"}]
    assert (first.response_a, first.response_b, first.preference) == ("4.", "5.", "a")
    assert [m["role"] for m in second.prompt_messages()] == ["user", "assistant", "user"]
    assert (second.response_a, second.response_b) == ("Blue.", "No.")
    assert run_cli("data", "validate", out_path)[0] == 0


def test_import_hh_gzipped_with_explicit_format(run_cli: RunCli, tmp_path: Path) -> None:
    src = tmp_path / "hh.jsonl.gz"
    src.write_bytes(gzip.compress("".join(json.dumps(r) + "\n" for r in HH_ROWS).encode()))
    code, _, err = run_cli("data", "import", src, "--format", "hh-rlhf", "-o", tmp_path / "o.jsonl")
    assert code == 0, err
    assert len(read_records(tmp_path / "o.jsonl")) == 2


def test_import_alpaca(run_cli: RunCli, tmp_path: Path) -> None:
    src = tmp_path / "alpaca.json"
    src.write_text(
        json.dumps(
            [
                {"instruction": "Name a colour.", "input": "", "output": "Blue."},
                {"instruction": "Translate into English.", "input": "chat", "output": "cat"},
                {"instruction": "Say hi.", "input": "<No input>", "output": "Hi!"},
            ]
        ),
        encoding="utf-8",
    )
    out_path = tmp_path / "demos.jsonl"
    code, out, err = run_cli("data", "import", src, "-o", out_path)
    assert code == 0, err
    assert "3 records (3 demonstration)" in flat(out)
    records = read_records(out_path, expected_type="demonstration")
    assert all(isinstance(r, Demonstration) for r in records)
    assert [r.prompt_messages()[-1]["content"] for r in records] == [
        "Name a colour.",
        "Translate into English.\n\nchat",
        "Say hi.",
    ]
    assert [r.response for r in records] == ["Blue.", "cat", "Hi!"]


def test_import_trl_preferences(run_cli: RunCli, tmp_path: Path) -> None:
    src = write_jsonl(
        tmp_path / "trl.jsonl",
        [
            {"prompt": "Say hi.", "chosen": "Hi!", "rejected": "Go away."},
            {"prompt": "2+2?", "chosen": "4", "rejected": "5", "extra_column": 1},
        ],
    )
    out_path = tmp_path / "cmp.jsonl"
    code, out, err = run_cli("data", "import", src, "--format", "trl", "-o", out_path)
    assert code == 0, err
    records = read_records(out_path, expected_type="comparison")
    assert [
        (r.prompt_messages()[0]["content"], r.response_a, r.response_b, r.preference) for r in records
    ] == [
        ("Say hi.", "Hi!", "Go away.", "a"),
        ("2+2?", "4", "5", "a"),
    ]


def test_import_invalid_row_fails_and_writes_nothing(run_cli: RunCli, tmp_path: Path) -> None:
    src = write_jsonl(tmp_path / "hh.jsonl", [HH_ROWS[0], HH_EMPTY_REPLY, HH_ROWS[1]])
    out_path = tmp_path / "out.jsonl"
    code, out, err = run_cli("data", "import", src, "-o", out_path)
    assert_user_error(code, out, err, f"{src}:2: chosen:", "--skip-invalid")
    assert not out_path.exists()
    assert not list(tmp_path.glob("*.tmp*"))


def test_import_skip_invalid_reports_the_skipped_rows(run_cli: RunCli, tmp_path: Path) -> None:
    src = write_jsonl(tmp_path / "hh.jsonl", [HH_ROWS[0], HH_EMPTY_REPLY, HH_ROWS[1]])
    out_path = tmp_path / "out.jsonl"
    code, out, err = run_cli("data", "import", src, "-o", out_path, "--skip-invalid")
    assert code == 0, err
    assert len(read_records(out_path)) == 2
    assert "2 records" in flat(out)
    assert "1 rows skipped" in err
    assert f"{src}:2: chosen:" in err


def test_import_unknown_format(run_cli: RunCli, tmp_path: Path) -> None:
    src = write_jsonl(tmp_path / "x.jsonl", [{"text": "just text"}])
    code, out, err = run_cli("data", "import", src, "-o", tmp_path / "o.jsonl")
    assert_user_error(code, out, err, "cannot tell the format")
    code, out, err = run_cli("data", "import", src, "--format", "csv", "-o", tmp_path / "o.jsonl")
    assert_user_error(code, out, err, "unknown import format 'csv'")


# ---------------------------------------------------------------------------------------------------------------------
# data export, data stats

COMPARISONS = [
    {
        "type": "comparison",
        "prompt": "What is 17 * 3?",
        "response_a": "51",
        "response_b": "41",
        "preference": "a",
        "strength": 3,
    },
    {
        "type": "comparison",
        "prompt": "Say hello.",
        "response_a": "Hello!",
        "response_b": "Hi there!",
        "preference": "tie",
        "strength": 0,
    },
    {
        "type": "comparison",
        "prompt": "Capital of France?",
        "response_a": "Lyon",
        "response_b": "Paris",
        "preference": "b",
        "strength": 2,
    },
]


def test_export_preference_skips_ties(run_cli: RunCli, tmp_path: Path) -> None:
    src, out_path = write_jsonl(tmp_path / "cmp.jsonl", COMPARISONS), tmp_path / "trl.jsonl"
    code, out, err = run_cli("data", "export", src, "--kind", "preference", "-o", out_path)
    assert code == 0, err
    rows = [json.loads(line) for line in out_path.read_text(encoding="utf-8").splitlines()]
    assert rows == [
        {
            "prompt": [{"role": "user", "content": "What is 17 * 3?"}],
            "chosen": [{"role": "assistant", "content": "51"}],
            "rejected": [{"role": "assistant", "content": "41"}],
        },
        {
            "prompt": [{"role": "user", "content": "Capital of France?"}],
            "chosen": [{"role": "assistant", "content": "Paris"}],
            "rejected": [{"role": "assistant", "content": "Lyon"}],
        },
    ]
    assert "2 rows (preference, conversational)" in flat(out)
    assert "skipped 1: tie" in flat(err)
    # and back: importing the export gives the non-tie comparisons
    code, _, err = run_cli("data", "import", out_path, "--format", "trl", "-o", tmp_path / "back.jsonl")
    assert code == 0, err
    back = read_records(tmp_path / "back.jsonl")
    assert [(r.response_a, r.response_b) for r in back] == [("51", "41"), ("Paris", "Lyon")]


def test_export_sft_standard(run_cli: RunCli, tmp_path: Path) -> None:
    src = write_jsonl(tmp_path / "mixed.jsonl", [GOOD_DEMO, COMPARISONS[0]])
    out_path = tmp_path / "sft.jsonl"
    code, out, err = run_cli("data", "export", src, "--kind", "sft", "--standard", "-o", out_path)
    assert code == 0, err
    rows = [json.loads(line) for line in out_path.read_text(encoding="utf-8").splitlines()]
    assert rows == [{"prompt": "Name a prime number.", "completion": "11 is prime."}]
    assert "skipped 1: comparison record" in flat(err)


def test_export_unknown_kind(run_cli: RunCli, tmp_path: Path) -> None:
    src = write_jsonl(tmp_path / "cmp.jsonl", COMPARISONS)
    code, out, err = run_cli("data", "export", src, "--kind", "dpo", "-o", tmp_path / "o.jsonl")
    assert_user_error(code, out, err, "--kind", "preference", "'dpo'")
    assert not (tmp_path / "o.jsonl").exists()


def test_stats_json(run_cli: RunCli, tmp_path: Path) -> None:
    src = write_jsonl(
        tmp_path / "three.jsonl",
        [
            {"type": "prompt", "prompt": "Bonjour ?", "language": "fr"},
            {
                "type": "demonstration",
                "prompt": "Name a prime.",
                "response": "11 is prime.",
                "annotator": "ana",
            },
            {
                "type": "comparison",
                "prompt": "Say hi.",
                "response_a": "Hi!",
                "response_b": "Hello there!",
                "preference": "tie",
                "strength": 0,
                "annotator": "ana",
            },
        ],
    )
    code, out, err = run_cli("data", "stats", src, "--json")
    assert code == 0, err
    stats = json.loads(out)
    assert stats["n_records"] == 3
    assert stats["types"] == {
        "prompt": 1,
        "demonstration": 1,
        "comparison": 1,
        "ranking": 0,
        "rating": 0,
        "thumb": 0,
    }
    assert stats["languages"] == {"en": 2, "fr": 1}
    assert stats["annotators"] == {"ana": 2, "(none)": 1}
    assert stats["comparisons"] == {
        "n": 1,
        "preference": {"a": 0, "b": 0, "tie": 1},
        "strength": {"0": 1, "1": 0, "2": 0, "3": 0},
    }
    assert stats["prompt_chars"] == {
        "n": 3,
        "mean": pytest.approx(29 / 3, abs=0.01),
        "median": 9,
        "min": 7,
        "max": 13,
    }
    assert stats["response_chars"] == {"n": 3, "mean": 9.0, "median": 12, "min": 3, "max": 12}


def test_stats_table_and_bad_file(run_cli: RunCli, tmp_path: Path) -> None:
    src = write_jsonl(tmp_path / "one.jsonl", [GOOD_DEMO])
    code, out, _ = run_cli("data", "stats", src)
    assert code == 0
    assert "n_records" in out and "response_chars" in out
    bad = write_jsonl(tmp_path / "bad.jsonl", [GOOD_DEMO, {"type": "nonsense", "prompt": "p"}])
    code, out, err = run_cli("data", "stats", bad, "--json")
    assert_user_error(code, out, err, f"{bad}:2: type:")
    assert out == ""


def test_data_demo_is_deterministic(run_cli: RunCli, tmp_path: Path) -> None:
    small = ["demo_data.n_documents=20", "demo_data.n_prompts=5", "demo_data.n_demonstrations=6", "demo_data.n_refusals=2"]
    for name in ("a", "b"):
        code, _, err = run_cli("data", "demo", *sets([*small, f"demo_data.out_dir={tmp_path / name}"]))
        assert code == 0, err
    for name in ("corpus.txt", "prompts.jsonl", "demonstrations.jsonl"):
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes()
    assert len(read_records(tmp_path / "a" / "prompts.jsonl")) == 5
    assert len(read_records(tmp_path / "a" / "demonstrations.jsonl")) == 6 + 2  # demonstrations + refusals


# ---------------------------------------------------------------------------------------------------------------------
# config


def test_config_show(run_cli: RunCli) -> None:
    code, out, err = run_cli("config", "show")
    assert code == 0, err
    assert "pretrain.lr" in out and "sft.lora_targets" in out
    code, out, err = run_cli("config", "show", "-c", TINY_TOML, "--set", "pretrain.lr=3e-4")
    assert code == 0, err
    lr_row = next(line for line in out.splitlines() if "pretrain.lr " in line)
    assert "0.0003" in lr_row and "number" in lr_row
    hidden_row = next(line for line in out.splitlines() if "model.hidden_size " in line)
    assert "192" in hidden_row  # from the preset


def test_config_unknown_key(run_cli: RunCli) -> None:
    code, out, err = run_cli("config", "show", "--set", "pretrain.nope=1")
    assert_user_error(code, out, err, "pretrain.nope", "Valid keys of [pretrain]:", "lr", "seq_len")


def test_config_wrong_type(run_cli: RunCli) -> None:
    code, out, err = run_cli("config", "show", "--set", "pretrain.lr=abc")
    assert_user_error(code, out, err, "pretrain.lr", "expects number", "'abc'")


def test_config_bad_override_syntax(run_cli: RunCli) -> None:
    code, out, err = run_cli("config", "show", "--set", "lr")
    assert_user_error(code, out, err, "section.field=value")


def test_config_file_unknown_section(run_cli: RunCli, tmp_path: Path) -> None:
    path = tmp_path / "bad.toml"
    path.write_text("[pretrain]\nlr = 1e-3\n\n[pretraining]\nseq_len = 64\n", encoding="utf-8")
    code, out, err = run_cli("config", "show", "-c", path)
    assert_user_error(code, out, err, str(path), "'pretraining'", "Valid sections:", "pretrain")


def test_config_file_missing_or_not_toml(run_cli: RunCli, tmp_path: Path) -> None:
    code, out, err = run_cli("config", "show", "-c", tmp_path / "none.toml")
    assert_user_error(code, out, err, "config file not found")
    broken = tmp_path / "broken.toml"
    broken.write_text("[pretrain\nlr = \n", encoding="utf-8")
    code, out, err = run_cli("config", "show", "-c", broken)
    assert_user_error(code, out, err, str(broken), "not valid TOML")


# ---------------------------------------------------------------------------------------------------------------------
# tokenizer, pretrain, sft, generate, eval


def test_tokenizer_train(run_cli: RunCli, demo_data, tmp_path: Path) -> None:
    from alinea.model.tokenizer import load_tokenizer

    out_dir = tmp_path / "tok"
    code, out, err = run_cli(
        "tokenizer",
        "train",
        "--corpus",
        demo_data["corpus"],
        "--out",
        out_dir,
        "--set",
        "tokenizer.vocab_size=400",
    )
    assert code == 0, err
    assert (out_dir / "tokenizer.json").is_file()
    tokenizer = load_tokenizer(out_dir)
    assert 256 < len(tokenizer) <= 400
    assert f"tokenizer ({len(tokenizer)} tokens)" in flat(out)
    text = "The river runs past the old mill."
    assert tokenizer.decode(tokenizer(text)["input_ids"]) == text


def test_tokenizer_train_empty_corpus(run_cli: RunCli, tmp_path: Path) -> None:
    corpus = tmp_path / "empty.txt"
    corpus.write_text("\n\n   \n\n", encoding="utf-8")
    out_dir = tmp_path / "tok"
    code, out, err = run_cli("tokenizer", "train", "--corpus", corpus, "--out", out_dir)
    assert_user_error(code, out, err, str(corpus), "no text")
    assert not out_dir.exists()


def test_tokenizer_train_vocab_too_small(run_cli: RunCli, demo_data, tmp_path: Path) -> None:
    code, out, err = run_cli(
        "tokenizer",
        "train",
        "--corpus",
        demo_data["corpus"],
        "--out",
        tmp_path / "t",
        "--set",
        "tokenizer.vocab_size=50",
    )
    assert_user_error(code, out, err, "tokenizer.vocab_size")


def test_pretrain_and_resume(run_cli: RunCli, demo_data, tokenizer_dir, tmp_path: Path) -> None:
    overrides = tiny_overrides(tmp_path) + [
        f"pretrain.corpus={demo_data['corpus']}",
        f"pretrain.tokenizer={tokenizer_dir}",
    ]
    code, out, err = run_cli("pretrain", "-c", TINY_TOML, *sets(overrides))
    assert code == 0, err
    run_dir = only_dir(tmp_path, "pretrain-")
    assert (run_dir / "config.toml").is_file()
    meta = json.loads((run_dir / "meta.json").read_text(encoding="utf-8"))
    assert meta["stage"] == "pretrain"
    assert meta["train_sequences"] > 0
    metrics_text = (run_dir / "metrics.jsonl").read_text(encoding="utf-8")
    metrics = [json.loads(line) for line in metrics_text.splitlines()]
    train = [m for m in metrics if m["split"] == "train"]
    assert [m["step"] for m in train] == [1, 2, 3, 4, 5, 6]
    assert all(math.isfinite(m["loss"]) and m["loss"] > 0 for m in train)
    assert any(m["split"] == "eval" for m in metrics)
    assert (run_dir / "final" / "config.json").is_file()
    final_config = json.loads((run_dir / "final" / "config.json").read_text(encoding="utf-8"))
    assert final_config["hidden_size"] == 32  # the override, not the preset's 192
    assert "pretrain: 6 steps" in flat(out)
    assert str(run_dir) in flat(out)

    # the saved config is the resolved one: the preset plus every override
    from alinea.config import load_config

    saved = load_config(run_dir / "config.toml")
    assert (saved.model.hidden_size, saved.pretrain.max_steps, saved.pretrain.lr) == (32, 6, 2e-3)

    code, out, err = run_cli("pretrain", "--resume", run_dir)
    assert code == 0, err
    assert "already finished" in flat(out)
    assert (run_dir / "metrics.jsonl").read_text(encoding="utf-8") == metrics_text
    assert only_dir(tmp_path, "pretrain-") == run_dir  # no new run directory


def test_pretrain_resume_not_a_run(run_cli: RunCli, tmp_path: Path) -> None:
    code, out, err = run_cli("pretrain", "--resume", tmp_path)
    assert_user_error(code, out, err, str(tmp_path), "not a run directory")


def test_pretrain_without_tokenizer(run_cli: RunCli, demo_data, tmp_path: Path) -> None:
    code, out, err = run_cli(
        "pretrain", *sets(tiny_overrides(tmp_path) + [f"pretrain.corpus={demo_data['corpus']}"])
    )
    assert_user_error(code, out, err, "pretrain.tokenizer")
    assert not list(tmp_path.iterdir())


def test_sft(run_cli: RunCli, demo_data, pretrained_dir, tmp_path: Path) -> None:
    overrides = tiny_overrides(tmp_path) + [
        f"sft.model={pretrained_dir}",
        f"sft.data={demo_data['demonstrations']}",
    ]
    code, out, err = run_cli("sft", *sets(overrides))
    assert code == 0, err
    run_dir = only_dir(tmp_path, "sft-")
    train = [
        json.loads(line) for line in (run_dir / "metrics.jsonl").read_text(encoding="utf-8").splitlines()
    ]
    assert [m["step"] for m in train if m["split"] == "train"] == [1, 2, 3, 4]
    assert (run_dir / "final" / "config.json").is_file()
    assert "sft: 4 steps" in flat(out)


def test_sft_model_folder_is_not_a_model(run_cli: RunCli, demo_data, tmp_path: Path) -> None:
    folder = tmp_path / "not-a-model"
    folder.mkdir()
    (folder / "notes.txt").write_text("hello", encoding="utf-8")
    overrides = tiny_overrides(tmp_path / "runs") + [
        f"sft.model={folder}",
        f"sft.data={demo_data['demonstrations']}",
    ]
    code, out, err = run_cli("sft", *sets(overrides))
    assert_user_error(code, out, err, str(folder), "config.json")
    assert not (tmp_path / "runs").exists()


def test_sft_bad_demonstration_line(run_cli: RunCli, pretrained_dir, tmp_path: Path) -> None:
    data = write_jsonl(
        tmp_path / "demos.jsonl",
        [GOOD_DEMO, {"prompt": "Say hi.", "response": "Hi!"}, {"prompt": "Say bye."}, GOOD_DEMO],
    )
    overrides = tiny_overrides(tmp_path / "runs") + [f"sft.model={pretrained_dir}", f"sft.data={data}"]
    code, out, err = run_cli("sft", *sets(overrides))
    assert_user_error(code, out, err, f"{data}:3: response:")
    assert f"{data}:2:" not in err  # `type` may be left out: the SFT stage expects demonstrations
    assert not (tmp_path / "runs").exists()


def test_generate_one_prompt(run_cli: RunCli, pretrained_dir, tmp_path: Path) -> None:
    out_path = tmp_path / "out.jsonl"
    code, out, err = run_cli(
        "generate", "-m", pretrained_dir, "-p", "Hello", "--set", "generate.max_new_tokens=5", "-o", out_path
    )
    assert code == 0, err
    rows = [json.loads(line) for line in out_path.read_text(encoding="utf-8").splitlines()]
    assert len(rows) == 1
    assert rows[0]["prompt"] == "Hello"
    assert isinstance(rows[0]["response"], str) and isinstance(rows[0]["finished"], bool)
    assert "> Hello" in out
    assert "1 answers" in flat(out)


def test_generate_from_prompts_file(run_cli: RunCli, demo_data, pretrained_dir, tmp_path: Path) -> None:
    out_path = tmp_path / "answers.jsonl"
    code, out, err = run_cli(
        "generate",
        "-m",
        pretrained_dir,
        "--prompts",
        demo_data["prompts"],
        "--limit",
        "3",
        "--set",
        "generate.max_new_tokens=4",
        "-o",
        out_path,
    )
    assert code == 0, err
    rows = [json.loads(line) for line in out_path.read_text(encoding="utf-8").splitlines()]
    expected = [r.prompt_messages() for r in read_records(demo_data["prompts"])[:3]]
    assert [row["prompt"] for row in rows] == expected
    assert "3 answers" in flat(out)


def test_generate_needs_a_prompt(run_cli: RunCli, pretrained_dir) -> None:
    code, out, err = run_cli("generate", "-m", pretrained_dir)
    assert_user_error(code, out, err, "--prompt")


def test_generate_missing_model(run_cli: RunCli, tmp_path: Path) -> None:
    code, out, err = run_cli("generate", "-m", tmp_path / "nowhere", "-p", "Hi")
    assert_user_error(code, out, err, str(tmp_path / "nowhere"), "not found")


def test_eval_perplexity(run_cli: RunCli, demo_data, pretrained_dir) -> None:
    code, out, err = run_cli(
        "eval",
        "perplexity",
        "-m",
        pretrained_dir,
        "-t",
        demo_data["corpus"],
        "--max-sequences",
        "4",
        "--json",
    )
    assert code == 0, err
    result = json.loads(out)
    assert result["sequences"] == 4
    assert result["tokens"] == 4 * 127
    assert math.isfinite(result["ppl"]) and result["ppl"] > 1
    assert result["ppl"] == pytest.approx(math.exp(result["loss"]), rel=1e-6)
    # after 6 steps the model is at best a little better than uniform guessing (ln 600 nats); not much worse
    assert result["loss"] < math.log(600) * 1.1


def test_vocab_mismatch_is_a_user_error(run_cli: RunCli, demo_data, pretrained_dir, tmp_path: Path) -> None:
    from alinea.data.corpus import read_documents
    from alinea.model.tokenizer import train_tokenizer

    model_dir = tmp_path / "model"
    shutil.copytree(pretrained_dir, model_dir)
    bigger = train_tokenizer(read_documents(demo_data["corpus"]), vocab_size=900)
    n_embeddings = json.loads((model_dir / "config.json").read_text(encoding="utf-8"))["vocab_size"]
    assert len(bigger) > n_embeddings
    bigger.save_pretrained(str(model_dir))
    code, out, err = run_cli("generate", "-m", model_dir, "-p", "Hello", "--set", "generate.max_new_tokens=2")
    assert_user_error(code, out, err, f"{len(bigger)} tokens", f"embeds only {n_embeddings}", "vocab")


# ---------------------------------------------------------------------------------------------------------------------
# bench


def test_bench_pretrain_json(run_cli: RunCli) -> None:
    overrides = [
        *TINY_MODEL_OVERRIDES,
        "pretrain.batch_size=2",
        "pretrain.seq_len=16",
        "tokenizer.vocab_size=512",
    ]
    code, out, err = run_cli("bench", "pretrain", "--json", "--steps", "1", "--rounds", "1", *sets(overrides))
    assert code == 0, err
    result = json.loads(out)  # the whole of stdout is one JSON object
    assert isinstance(result, dict)
    assert {"ours", "baseline", "unit", "ratio"} <= set(result)
    assert result["unit"] == "tokens/s"
    assert result["ours"] > 0 and result["baseline"] > 0
    assert result["ratio"] == pytest.approx(result["ours"] / result["baseline"], rel=2e-2)  # ours and baseline are printed rounded
    assert result["workload"]["batch"] == [2, 16]
    assert "h=32" in result["workload"]["model"] and "vocab=512" in result["workload"]["model"]
