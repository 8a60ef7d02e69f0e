"""Fail when the modules of python/lmmscan import each other in a circle.

Every import statement counts, at module level or inside a function (a
function-level import hides a circle from Python's import system, not from
the design), and so do imports under ``if TYPE_CHECKING:``.  An import of a
name from a package (``from . import x``) is an import of the submodule x
when there is one, else of the package.  The implicit import of a parent
package by its submodules is not counted.

    python scripts/check_import_cycles.py            # exit 1 and the cycles, if any
    python scripts/check_import_cycles.py DIR        # the lmmscan package under DIR
"""

from __future__ import annotations

import ast
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1] / "python"
PACKAGE = "lmmscan"


def module_name(path: Path, root: Path) -> str:
    parts = list(path.relative_to(root).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def imports(path: Path, name: str, modules: set[str]) -> set[str]:
    """The lmmscan modules that the file at ``path`` (module ``name``) imports."""
    is_package = path.name == "__init__.py"
    base = name.split(".") if is_package else name.split(".")[:-1]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                anchor = base[: len(base) - node.level + 1]
                prefix = ".".join(anchor + ([node.module] if node.module else []))
            else:
                prefix = node.module or ""
            targets = [f"{prefix}.{alias.name}" for alias in node.names]
            targets = [t if t in modules else prefix for t in targets]
        else:
            continue
        for target in targets:
            while target and target not in modules:  # a name inside a module
                target = target.rpartition(".")[0]
            if target and target != name:
                found.add(target)
    return found


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    out: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph.get(v, ())):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                out.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return out


def main(root: Path = ROOT) -> int:
    files = sorted((root / PACKAGE).rglob("*.py"))
    stubs = sorted((root / PACKAGE).rglob("*.pyi"))  # the compiled _core
    modules = {module_name(f, root) for f in [*files, *stubs]}
    graph = {module_name(f, root): imports(f, module_name(f, root), modules) for f in files}
    found = cycles(graph)
    for component in found:
        inner = {m: sorted(graph[m] & set(component)) for m in component}
        print("import cycle: " + "; ".join(f"{m} -> {', '.join(t)}" for m, t in inner.items()))
    edges = sum(len(v) for v in graph.values())
    print(f"{len(modules)} modules, {edges} imports between them, {len(found)} cycles")
    return 1 if found else 0


if __name__ == "__main__":
    sys.exit(main(Path(sys.argv[1]).resolve() if len(sys.argv) > 1 else ROOT))
