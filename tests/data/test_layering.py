"""The data modules import each other in one direction only (no cycle, lazy imports included)."""
import ast
from pathlib import Path

import neox_cpt.data

DATA = Path(neox_cpt.data.__file__).parent


def data_imports(path: Path):
    out = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("neox_cpt.data."):
            out.add(node.module.split(".")[2])
        elif isinstance(node, ast.ImportFrom) and node.module == "neox_cpt.data":
            out.update(a.name for a in node.names)
        elif isinstance(node, ast.Import):
            out.update(a.name.split(".")[2] for a in node.names if a.name.startswith("neox_cpt.data."))
    return out


def test_no_import_cycle_among_the_data_modules():
    graph = {p.stem: data_imports(p) & {q.stem for q in DATA.glob("*.py")} for p in DATA.glob("*.py")}

    def visit(node, stack):
        assert node not in stack, "import cycle: " + " -> ".join(stack[stack.index(node):] + [node])
        for nxt in sorted(graph.get(node, ())):
            visit(nxt, stack + [node])

    for module in sorted(graph):
        visit(module, [])
