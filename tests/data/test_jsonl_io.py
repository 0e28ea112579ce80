"""JSONL files: one error per bad line as FILE:LINE: FIELD: EXPECTED; atomic writes."""

from __future__ import annotations

import gzip
import json
import os

import pytest

from alinea.data.jsonl import read_records, validate_file, write_jsonl, write_records
from alinea.data.records import Comparison, Demonstration, Prompt, parse_record
from alinea.errors import UserError

GOOD_DEMO = {"type": "demonstration", "prompt": "Say hi in French.", "response": "Salut !", "language": "fr"}
GOOD_COMPARISON = {
    "type": "comparison",
    "prompt": "p",
    "response_a": "x",
    "response_b": "y",
    "preference": "a",
}


def details_of(path, **kwargs) -> UserError:
    with pytest.raises(UserError) as caught:
        read_records(path, **kwargs)
    return caught.value


def test_reads_good_file_skipping_blank_lines(write_lines):
    path = write_lines("good.jsonl", [GOOD_DEMO, "", "   ", GOOD_COMPARISON])
    records = read_records(path)
    assert [type(r) for r in records] == [Demonstration, Comparison]
    assert records[0].response == "Salut !"


def test_every_bad_line_is_reported_with_file_line_and_field(write_lines):
    path = write_lines(
        "mixed.jsonl",
        [
            GOOD_DEMO,  # 1 fine
            '{"type": "demonstration", "prompt": "p", "response": }',  # 2 malformed JSON
            "",  # 3 blank: skipped, still counted as a line number
            {"type": "demonstration", "prompt": "p"},  # 4 missing field
            {**GOOD_COMPARISON, "strength": True},  # 5 bool as int
            {**GOOD_DEMO, "response": ""},  # 6 empty response
            {**GOOD_DEMO, "colour": "red"},  # 7 unknown field
            {**GOOD_COMPARISON, "preference": "A"},  # 8 bad enum
            {**GOOD_COMPARISON, "preference": "tie", "strength": 1},  # 9 tie with strength
            {"type": "ranking", "prompt": "p", "responses": ["x", "y"], "ranks": [1]},  # 10
            {"type": "rating", "prompt": "p", "response": "r", "ratings": {"help": 9}},  # 11
            "[1, 2]",  # 12 not an object
            GOOD_COMPARISON,  # 13 fine
        ],
    )
    error = details_of(path)
    assert error.message == (
        f"10 of 12 lines in {path} are invalid; each is listed below as file:line: field: expected. "
        "Fix them and run again."
    )
    assert error.details == [
        f"{path}:2: json: valid JSON, but Expecting value at column 54",
        f"{path}:4: response: a non-empty string (the field is missing)",
        f"{path}:5: strength: an integer from 0 to 3, found true (a boolean)",
        f"{path}:6: response: a non-empty string, found an empty string",
        f"{path}:7: colour: no such field in a demonstration record; allowed: "
        "type, id, prompt, messages, response, language, tags, annotator, time",
        f"{path}:8: preference: one of 'a', 'b', 'tie', found the string 'A'",
        f"{path}:9: strength: 0 for a tie (a tie has no winner to be better), found 1",
        f"{path}:10: ranks: one rank per response (2 ranks), found a list of 1 item",
        f"{path}:11: ratings.help: a number within the scale [1, 7], found 9",
        f"{path}:12: record: a JSON object, found a list of 2 items",
    ]
    assert str(error).splitlines()[1] == f"  {path}:2: json: valid JSON, but Expecting value at column 54"


def test_validate_file_keeps_good_records_beside_errors(write_lines):
    path = write_lines("mixed.jsonl", [GOOD_DEMO, "{oops", GOOD_COMPARISON])
    report = validate_file(path)
    assert (report.n_lines, len(report.records), report.ok) == (3, 2, False)
    assert report.errors == [
        f"{path}:2: json: valid JSON, but Expecting property name enclosed in double quotes at column 2"
    ]
    assert validate_file(write_lines("fine.jsonl", [GOOD_DEMO])).ok


def test_non_utf8_file_names_the_first_bad_line_and_byte(tmp_path):
    path = tmp_path / "latin1.jsonl"
    good = json.dumps(GOOD_DEMO).encode()
    path.write_bytes(good + b"\n" + b'{"id":"\xff", "prompt": "x"}\n' + b'{"x": "\xe9"}\n')
    error = details_of(path)
    assert error.message == f"{path} is not UTF-8 text; save it as UTF-8 and run again."
    assert error.details == [f"{path}:2: encoding: expected UTF-8 text, found byte 0xff at column 8"]


def test_empty_and_blank_files_are_errors(tmp_path):
    for name, content in (("empty.jsonl", ""), ("blank.jsonl", "\n  \n\n")):
        path = tmp_path / name
        path.write_text(content, encoding="utf-8")
        error = details_of(path)
        assert error.message == f"{path} holds no records: expected one JSON object a line."
        assert error.details == [f"{path}: expected at least one record, found an empty file"]


def test_missing_file_is_named(tmp_path):
    path = tmp_path / "nope.jsonl"
    error = details_of(path)
    assert error.message == f"{path} does not exist: expected a data file there."
    assert error.details == []
    with pytest.raises(UserError, match="is a folder"):
        read_records(tmp_path)


def test_expected_type_applies_to_lines_without_type(write_lines):
    path = write_lines("demos.jsonl", [{"prompt": "p", "response": "r"}, {**GOOD_COMPARISON}])
    error = details_of(path, expected_type="demonstration")
    assert error.details == [
        f"{path}:2: type: 'demonstration' (only demonstration records are expected here), found 'comparison'"
    ]
    assert read_records(write_lines("ok.jsonl", [{"prompt": "p"}]), expected_type="prompt") == [
        Prompt(prompt="p")
    ]


def test_bom_crlf_and_gzip_are_read(tmp_path):
    path = tmp_path / "windows.jsonl"
    path.write_bytes(
        b"\xef\xbb\xbf" + json.dumps(GOOD_DEMO).encode() + b"\r\n" + json.dumps(GOOD_DEMO).encode() + b"\r\n"
    )
    assert len(read_records(path)) == 2
    zipped = tmp_path / "demos.jsonl.gz"
    zipped.write_bytes(gzip.compress((json.dumps(GOOD_DEMO) + "\n").encode()))
    assert read_records(zipped) == [parse_record(GOOD_DEMO)]


def test_line_separator_inside_a_string_does_not_split_the_line(tmp_path):
    record = Demonstration(prompt="one\u2028two", response="three\u2029four\x85five")
    path = tmp_path / "odd.jsonl"
    write_records(path, [record])
    assert read_records(path) == [record]


def test_write_then_read_round_trip_keeps_unicode_raw(tmp_path):
    records = [
        parse_record(GOOD_DEMO),
        parse_record(GOOD_COMPARISON),
        Prompt(prompt="Manao ahoana ê 日本", language="mg"),
    ]
    path = tmp_path / "sub" / "out.jsonl"
    assert write_records(path, records) == 3
    assert read_records(path) == records
    text = path.read_bytes().decode("utf-8")
    assert "Manao ahoana ê 日本" in text and "\\u" not in text
    assert text.count("\n") == 3
    assert text.splitlines()[0] == json.dumps(parse_record(GOOD_DEMO).to_json(), ensure_ascii=False)
    assert path.stat().st_mode & 0o777 == 0o644


def test_failed_write_leaves_old_file_and_no_temp_file(tmp_path):
    path = tmp_path / "data.jsonl"
    path.write_text("old contents\n", encoding="utf-8")
    os.chmod(path, 0o600)

    def rows_that_fail_midway():
        yield {"n": 1}
        yield {"n": 2}
        raise RuntimeError("generator broke")

    with pytest.raises(RuntimeError, match="generator broke"):
        write_jsonl(path, rows_that_fail_midway())
    assert path.read_text(encoding="utf-8") == "old contents\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["data.jsonl"]

    with pytest.raises(ValueError):  # NaN is not JSON: refused before anything replaces the file
        write_jsonl(path, [{"x": float("nan")}])
    with pytest.raises(TypeError):
        write_jsonl(path, [{"x": object()}])
    assert path.read_text(encoding="utf-8") == "old contents\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["data.jsonl"]

    assert write_jsonl(path, [{"n": 1}, {"n": 2}]) == 2
    assert path.read_text(encoding="utf-8") == '{"n": 1}\n{"n": 2}\n'
    assert path.stat().st_mode & 0o777 == 0o600  # an existing file keeps its permissions
