"""No service borrows another's code: a module under services/X/ imports nothing from services/Y/ (Y != X), and
common/ imports no service.

Every import counts: at module level or inside a function, `import a.b` and `from a import b`, relative ones
resolved against the importing file's package. Shared things live in common/.
"""

import ast
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
SERVICES = REPO / "services"


def module_of(path: Path) -> list[str]:
    """The dotted name of a file under the repository root, as parts (a package's __init__ is the package)."""
    parts = list(path.relative_to(REPO).with_suffix("").parts)
    return parts[:-1] if parts[-1] == "__init__" else parts


def imported_modules(path: Path, source: str) -> list[tuple[int, str]]:
    """(line, absolute module) of every import in `source`; `from m import n` counts as `m.n` (n may be a module)."""
    package = module_of(path) if path.name == "__init__.py" else module_of(path)[:-1]
    found: list[tuple[int, str]] = []
    for node in ast.walk(ast.parse(source, filename=str(path))):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                up = node.level - 1
                if up > len(package):
                    raise ValueError(f"{path}:{node.lineno}: relative import beyond the top package")
                base = package[:len(package) - up]
                module = ".".join(base + ([node.module] if node.module else []))
            else:
                module = node.module or ""
            found += [(node.lineno, f"{module}.{alias.name}" if alias.name != "*" else module) for alias in node.names]
    return found


def service_of(module: str) -> str | None:
    """The service a dotted module belongs to (`services.<name>...`), None outside services/."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 and parts[0] == "services" else None


def cross_service_imports(path: Path, source: str) -> list[str]:
    """`file:line: services.X imports <module>` for each import of another service's code."""
    own = service_of(".".join(module_of(path)))
    rel = path.relative_to(REPO)
    return [f"{rel}:{line}: services.{own} imports {module}" for line, module in imported_modules(path, source)
            if (other := service_of(module)) is not None and other != own]


def test_no_service_imports_another_service():
    problems = [p for path in sorted(SERVICES.rglob("*.py"))
                for p in cross_service_imports(path, path.read_text(encoding="utf-8"))]
    assert not problems, "services import each other's code (move it to common/):\n" + "\n".join(problems)


def test_common_imports_no_service():
    problems = [p for path in sorted((REPO / "common").rglob("*.py"))
                for p in cross_service_imports(path, path.read_text(encoding="utf-8"))]
    assert not problems, "common/ is shared by every service and imports none of them:\n" + "\n".join(problems)


@pytest.mark.parametrize(("where", "source", "expected"), [
    ("services/paper/a.py", "import services.executor.plan\n", ["services.executor.plan"]),
    ("services/paper/a.py", "from services.executor import plan\n", ["services.executor.plan"]),
    ("services/paper/a.py", "from services import executor\n", ["services.executor"]),
    ("services/paper/a.py", "def f():\n    from services.persistence.trades import x\n",
     ["services.persistence.trades.x"]),
    ("services/paper/sub/a.py", "from ...executor.plan import x\n", ["services.executor.plan.x"]),
    ("services/paper/__init__.py", "from ..executor import plan\n", ["services.executor.plan"]),
    ("services/paper/a.py", "from . import account\nfrom .account import x\nimport services.paper.store\n", []),
    ("services/paper/a.py", "from common import messages\nimport os\n", []),
    ("services/paper/sub/a.py", "from .. import account\n", []),
])
def test_the_check_sees_every_form_of_import(where, source, expected):
    problems = cross_service_imports(REPO / where, source)
    assert [p.split(" imports ")[1] for p in problems] == expected
    assert all(p.startswith(f"{where}:") for p in problems)
