"""The README's Python examples run as written, and give the values their comments promise."""

import re
from pathlib import Path

import pytest

README = Path(__file__).resolve().parents[1] / "README.md"
BLOCKS = re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.S)
# `expression   # 'value' (an explanation)`: the line promises that the expression gives 'value'
PROMISE = re.compile(r"^(?P<expr>\S.*?)\s+# (?P<value>'[^']*').*$", flags=re.M)


def checked(block: str) -> str:
    """The block with each promise turned into an assertion."""
    return PROMISE.sub(lambda m: f"assert ({m['expr']}) == {m['value']}, {m['expr']!r}", block)


def test_readme_has_python_examples_that_promise_values():
    assert len(BLOCKS) >= 3
    assert sum(len(PROMISE.findall(b)) for b in BLOCKS) >= 2


@pytest.mark.parametrize("index", range(len(BLOCKS)))
def test_readme_example_runs(index, capsys):
    exec(compile(checked(BLOCKS[index]), f"README.md python block {index}", "exec"), {})


def test_a_broken_promise_fails():
    with pytest.raises(AssertionError):
        exec(checked("x = 'feasible'\nx   # 'infeasible' (proved)\n"), {})
