"""Bad text data or tokenizers: one line naming the key and the file (and record), exit 2, nothing created."""

from __future__ import annotations

import shutil

import pytest

from tests.conftest import EXAMPLES
from tests.runtime.runs import exp

SFT = EXAMPLES / "sft_task.toml"

CASES = {
    "no file matches": ("data.files", "nope/*.jsonl", None, "data.files: no file matches"),
    "unknown format": ("data.files", "data.csv", "1,2\n", "data.files: cannot tell the format of"),
    "field absent from a record": (
        "data.files",
        "missing.jsonl",
        '{"prompt": "1+1=", "completion": "2"}\n{"prompt": "1+2="}\n',
        "data.completion_field: record 2 of",
    ),
    "broken JSON": ("data.files", "broken.jsonl", '{"prompt": "1+1=", "completion": "2"}\n{"prompt": \n', "line 2 of"),
    "empty corpus": ("data.files", "empty.jsonl", "", "data.files: no records in"),
    "unreadable tokenizer": ("data.tokenizer", "tokenizer.json", "garbage", "data.tokenizer:"),
}


@pytest.mark.parametrize("case", CASES, ids=list(CASES))
def test_bad_text_input_is_one_line_exit_2_and_creates_nothing(tmp_path, case):
    key, name, content, expected = CASES[case]
    if content is not None:
        (tmp_path / name).write_text(content)
    run_dir = tmp_path / "run"
    result = exp("run", str(SFT), f'{key}="{tmp_path / name}"', "--run-dir", str(run_dir))
    lines = result.stderr.strip().splitlines()
    assert result.returncode == 2, result.stderr
    assert len(lines) == 1 and expected in lines[0] and "Traceback" not in result.stderr, lines
    assert name in lines[0] or key == "data.files" and "nope" in lines[0]
    assert not run_dir.exists()


def test_a_missing_tokenizer_is_named_before_anything_runs(tmp_path):
    result = exp("plan", str(SFT), f'data.tokenizer="{tmp_path / "absent"}"')
    assert result.returncode == 2
    (line,) = result.stderr.strip().splitlines()
    assert "data.tokenizer" in line and "absent" in line


def test_a_chat_record_without_an_assistant_turn_is_refused_before_anything_is_written(tmp_path):
    good = '{"messages": [{"role": "user", "content": "1+1"}, {"role": "assistant", "content": "2"}]}\n'
    bad = '{"messages": [{"role": "user", "content": "1+2"}, {"role": "user", "content": "3"}]}\n'
    (tmp_path / "chat.jsonl").write_text(good * 40 + bad + good * 40)
    shutil.copy(EXAMPLES / "base.toml", tmp_path / "base.toml")
    spec = tmp_path / "chat.toml"
    spec.write_text(
        SFT.read_text()
        .replace('prompt_field = "prompt"\ncompletion_field = "completion"', 'messages_field = "messages"')
        .replace('"data/sft_task/train.jsonl"', '"chat.jsonl"')
        .replace('eval_files = "data/sft_task/eval.jsonl"\n', "")
        .replace('"data/sft_task/tokenizer"', f'"{EXAMPLES / "data" / "sft_task" / "tokenizer"}"')
    )
    run_dir = tmp_path / "run"
    result = exp("run", str(spec), "--run-dir", str(run_dir))
    assert result.returncode == 2, result.stderr
    (line,) = result.stderr.strip().splitlines()
    assert "data.messages_field" in line and "chat.jsonl" in line and "record 41" in line, line
    assert not run_dir.exists()
