"""`kaleido completion bash`: a bash completion script made from the parser itself, so it
offers exactly the commands and options the installed version has (no extra package).

Install: `source <(kaleido completion bash)` in ~/.bashrc; zsh: `autoload bashcompinit &&
bashcompinit` first.
"""

from __future__ import annotations

import argparse


def _subparsers(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    for action in parser._actions:  # argparse has no public accessor for subcommands
        if isinstance(action, argparse._SubParsersAction):
            return dict(action.choices)
    return {}


def _words(parser: argparse.ArgumentParser) -> list[str]:
    """The options a parser takes and the values of its positional choices."""
    words: list[str] = []
    for action in parser._actions:
        if action.help == argparse.SUPPRESS:
            continue
        if action.option_strings:
            words.extend(o for o in action.option_strings if o.startswith("--"))
        elif action.choices and not isinstance(action, argparse._SubParsersAction):
            words.extend(str(c) for c in action.choices)
    return words


def command_words(parser: argparse.ArgumentParser) -> dict[str, list[str]]:
    """What to offer after each command path: "" (none yet), "dlq", "dlq replay", ..."""
    table: dict[str, list[str]] = {}

    def walk(path: str, node: argparse.ArgumentParser) -> None:
        children = _subparsers(node)
        table[path] = sorted(children) + _words(node)
        for name, child in children.items():
            walk(f"{path} {name}".strip(), child)

    walk("", parser)
    return table


def bash_completion(parser: argparse.ArgumentParser) -> str:
    """The script: completes the command path typed so far, then its options."""
    cases = "\n".join(
        f'        "{path}") words="{" ".join(words)}" ;;'
        for path, words in command_words(parser).items()
    )
    commands = " ".join(sorted(path for path in command_words(parser) if path))
    return f"""# bash completion for kaleido (`source <(kaleido completion bash)`)
_kaleido() {{
    local cur path word words known=" {commands} "
    cur="${{COMP_WORDS[COMP_CWORD]}}"
    path=""
    for word in "${{COMP_WORDS[@]:1:COMP_CWORD-1}}"; do
        case "$word" in -*) continue ;; esac
        case "$known" in *" ${{path:+$path }}$word "*) path="${{path:+$path }}$word" ;; esac
    done
    case "$path" in
{cases}
        *) words="" ;;
    esac
    COMPREPLY=($(compgen -W "$words" -- "$cur"))
}}
complete -o default -F _kaleido kaleido
"""
