"""No function of the package is longer than 60 code lines: each can be read, and followed, on one screen."""

import ast
import textwrap
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent.parent / "dkjax"
LIMIT = 60


def code_lines(lines: list[str], node: ast.FunctionDef | ast.AsyncFunctionDef) -> int:
    """Lines of ``node``, decorators and signature included, that hold code.

    Not counted: its docstring, blank lines and lines holding only a comment. A nested
    function counts towards the function that holds it.
    """
    body = node.body
    docstring = set()
    if body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant):
        if isinstance(body[0].value.value, str):
            docstring = set(range(body[0].lineno, body[0].end_lineno + 1))
    first = min([node.lineno] + [decorator.lineno for decorator in node.decorator_list])
    return sum(
        1
        for number in range(first, node.end_lineno + 1)
        if number not in docstring and lines[number - 1].strip() and not lines[number - 1].strip().startswith("#")
    )


def long_functions(root: Path, limit: int = LIMIT) -> list[str]:
    """``"path:line name (N code lines)"`` for every function under ``root`` longer than ``limit``."""
    found = []
    for path in sorted(root.rglob("*.py")):
        source = path.read_text()
        lines = source.splitlines()
        for node in ast.walk(ast.parse(source)):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and code_lines(lines, node) > limit:
                found.append(f"{path.relative_to(root.parent)}:{node.lineno} {node.name} ({code_lines(lines, node)})")
    return found


def test_no_function_in_the_package_is_over_60_code_lines():
    assert long_functions(PACKAGE) == []


def test_the_count_leaves_out_the_docstring_comments_and_blank_lines(tmp_path):
    source = textwrap.dedent(
        '''
        @decorated
        def f(x,
              y):
            """A docstring

            over lines."""
            # a comment

            def g():
                return x  # a nested function counts towards f
            return g
        '''
    )
    node = ast.parse(source).body[0]
    assert code_lines(source.splitlines(), node) == 6  # decorator, two signature lines, def g, two returns
    (tmp_path / "pkg").mkdir()
    (tmp_path / "pkg" / "m.py").write_text(source)
    assert long_functions(tmp_path / "pkg", limit=5) == ["pkg/m.py:3 f (6)"]
    assert long_functions(tmp_path / "pkg", limit=6) == []
