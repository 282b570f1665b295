"""`exp --help` lists every command with its description and an example; shell completion works."""

from __future__ import annotations

from expspec.cli import app
from expspec.cli.help import summary_and_example
from tests.conftest import run_exp


def _commands() -> dict[str, str]:
    return {command.name: command.help for command in app.registered_commands}


def test_help_lists_every_command_with_its_summary_and_example():
    result = run_exp("--help")
    assert result.returncode == 0, result.stderr
    text = " ".join(result.stdout.split())  # descriptions wrap at the terminal's width
    commands = _commands()
    assert {"run", "launch", "audit", "lock", "plan", "validate", "schema"} <= set(commands)
    for name, help_text in commands.items():
        summary, example = summary_and_example(help_text)
        assert summary and " ".join(summary.split()) in text, name
        assert example is not None and example.startswith(f"exp {name}"), (
            f"{name}: its help has no 'Example: exp {name} ...'"
        )
        assert f"$ {example}" in result.stdout, name
    assert "--install-completion" in result.stdout and "--show-completion" in result.stdout


def test_summary_and_example_skip_click_markers():
    assert summary_and_example("Do it.\n\nMore.\n\n\b\nExample: exp it now\nExample: exp it later") == (
        "Do it.",
        "exp it now",
    )
    assert summary_and_example("Only words.") == ("Only words.", None)


def test_completion_script_and_completions():
    # Typer detects the shell from the parent process; this variable lets a test name it.
    env = {"_TYPER_COMPLETE_TEST_DISABLE_SHELL_DETECTION": "1"}
    script = run_exp("--show-completion", "bash", env=env)
    assert script.returncode == 0, script.stderr
    assert (
        "_EXP_COMPLETE=complete_bash" in script.stdout and "complete -o default -F _exp_completion exp" in script.stdout
    )
    zsh = run_exp("--show-completion", "zsh", env=env)
    assert zsh.returncode == 0 and "#compdef exp" in zsh.stdout
    # What the bash script asks: the commands starting with "r", then run's options starting with "--sw".
    words = run_exp(env={"_EXP_COMPLETE": "complete_bash", "COMP_WORDS": "exp r", "COMP_CWORD": "1"})
    assert set(words.stdout.split()) == {name for name in _commands() if name.startswith("r")}
    options = run_exp(env={"_EXP_COMPLETE": "complete_bash", "COMP_WORDS": "exp run spec.toml --sw", "COMP_CWORD": "3"})
    assert options.stdout.split() == ["--sweep"]
