"""The package's shape: no import circles between the modules of gradcheck/ and plugin/."""

import ast
import inspect
import textwrap
import typing
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = "gradcheck"


def module_files() -> dict[str, Path]:
    """Dotted module name -> file, for the package and the plugin."""
    files = {f"{PACKAGE}.{p.stem}" if p.stem != "__init__" else PACKAGE: p
             for p in sorted((ROOT / PACKAGE).glob("*.py"))}
    files.update({p.stem: p for p in sorted((ROOT / "plugin").glob("*.py"))})
    return files


def _runs(node: ast.AST) -> bool:
    """False for an ``if TYPE_CHECKING:`` block: imports for type checkers never run."""
    test = getattr(node, "test", None)
    return not (isinstance(node, ast.If) and isinstance(test, ast.Name)
                and test.id == "TYPE_CHECKING")


def imported_by(name: str, path: Path, known: set[str]) -> set[str]:
    """The known modules ``name`` imports anywhere (top level or inside functions)."""
    package = name if path.stem == "__init__" else name.rpartition(".")[0]
    found: set[str] = set()
    stack = [ast.parse(path.read_text(), str(path))]
    while stack:
        node = stack.pop()
        stack.extend(child for child in ast.iter_child_nodes(node) if _runs(child))
        if isinstance(node, ast.Import):
            candidates = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")[:len(package.split(".")) - node.level + 1]
                base = ".".join(parts + ([node.module] if node.module else []))
            candidates = [f"{base}.{alias.name}" for alias in node.names] + [base]
        else:
            continue
        for candidate in candidates:
            if candidate in known:
                found.add(candidate)
                break
    found.discard(name)
    return found


def import_graph() -> dict[str, set[str]]:
    files = module_files()
    return {name: imported_by(name, path, set(files)) for name, path in files.items()}


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Every import circle, each as the path that closes it."""
    found, done = [], set()

    def visit(node: str, path: list[str]) -> None:
        if node in path:
            found.append(path[path.index(node):] + [node])
            return
        if node in done:
            return
        for target in sorted(graph[node]):
            visit(target, path + [node])
        done.add(node)

    for node in sorted(graph):
        visit(node, [])
    return found


def test_the_import_graph_sees_the_known_edges():
    graph = import_graph()
    assert "gradcheck._arrays" in graph["gradcheck._check"]
    assert "gradcheck._options" in graph["gradcheck._declare"]
    assert "gradcheck._fuzz" in graph["pytest_gradcheck"]  # an import inside a hook counts


def test_no_module_imports_a_module_that_imports_it():
    graph = import_graph()
    assert cycles(graph) == [], "\n".join(" -> ".join(c) for c in cycles(graph))


def test_the_check_finds_a_circle():
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c", "a"]]


def test_the_core_imports_nothing_that_imports_it_back_lazily():
    """The numerical helpers the extra checks share sit below the core, not in it."""
    graph = import_graph()
    for module in ("gradcheck._modes", "gradcheck._mixed", "gradcheck._second_order",
                   "gradcheck._arrays", "gradcheck._numerics", "gradcheck._options"):
        assert "gradcheck._check" not in graph[module], module


def test_options_and_declarations_stay_free_of_tensorflow():
    for module in ("_options", "_declare", "_numerics", "_report"):
        source = (ROOT / PACKAGE / f"{module}.py").read_text()
        tree = ast.parse(source)
        top = [n for n in tree.body if isinstance(n, (ast.Import, ast.ImportFrom))]
        names = {a.name for n in top for a in n.names} | {n.module for n in top
                                                         if isinstance(n, ast.ImportFrom)}
        assert not names & {"tensorflow", "keras", "hypothesis"}, module


def test_the_readme_names_every_module():
    """README's "How it is built" lists each module of gradcheck/ and plugin/."""
    text = (ROOT / "README.md").read_text()
    section = text[text.index("## How it is built"):]
    section = section[:section.index("\n## ", 1)]
    for path in module_files().values():
        assert f"{path.name}`" in section, path.name


LIMIT = 600  # lines: the project's limit for a module in gradcheck/ or plugin/


def test_no_module_is_over_the_size_limit():
    """Small modules with one job: a module that grows past the limit is split, not grown."""
    sizes = {path.name: len(path.read_text().splitlines()) for path in module_files().values()}
    assert {name: n for name, n in sizes.items() if n > LIMIT} == {}


# The first-order comparison and the checks after it read the core's results as frozen records
# (gradcheck/_records.py) and report through the callables they are handed, not through the run.
RECORD_READERS = ("_routes", "_windows", "_second_order", "_mixed", "_modes", "_conditioning")


def reaching_into_objects(source: str) -> list[str]:
    """What in ``source`` reaches into an object it does not own: a parameter named ``run``, an
    attribute set on anything but ``self``, ``getattr``/``hasattr``/``setattr``/``delattr``
    (probing for attributes someone else may have set), or a private attribute (``x._name``)
    of anything but ``self``."""
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.arg) and node.arg == "run":
            found.append(f"line {node.lineno}: a parameter named run")
        elif isinstance(node, (ast.Assign, ast.AugAssign, ast.AnnAssign)):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            for target in targets:
                for changed in _changed(target):
                    if not _is_self(changed.value):
                        found.append(f"line {node.lineno}: sets {ast.unparse(changed)}")
        elif (isinstance(node, ast.Call) and isinstance(node.func, ast.Name)
              and node.func.id in ("getattr", "hasattr", "setattr", "delattr")):
            found.append(f"line {node.lineno}: {node.func.id}(...)")
        elif (isinstance(node, ast.Attribute) and isinstance(node.ctx, ast.Load)
              and node.attr.startswith("_") and not node.attr.startswith("__")
              and not _is_self(node.value)):
            found.append(f"line {node.lineno}: reads {ast.unparse(node)}")
    return sorted(found, key=lambda text: int(text.split(":")[0].split()[1]))


def _changed(target: ast.AST) -> list[ast.Attribute]:
    """The attributes an assignment to ``target`` changes: ``x.a = ``, ``x.a[k] = ``."""
    if isinstance(target, (ast.Tuple, ast.List)):
        return [a for element in target.elts for a in _changed(element)]
    while isinstance(target, ast.Subscript):
        target = target.value
    return [target] if isinstance(target, ast.Attribute) else []


def _is_self(node: ast.AST) -> bool:
    return isinstance(node, ast.Name) and node.id == "self"


def test_the_check_finds_a_step_reaching_into_the_run():
    source = textwrap.dedent("""
        def check(run):
            cached = getattr(run, "_cache", None)
            run._cache = cached
            args = [run._cast_arg(a) for a in run.args]
            run.diag[0], self.value, args[run.k] = None, 1, 2
    """)
    assert reaching_into_objects(source) == [
        "line 2: a parameter named run", "line 3: getattr(...)", "line 4: sets run._cache",
        "line 5: reads run._cast_arg", "line 6: sets run.diag"]


def test_the_checks_after_the_first_order_one_read_records_not_the_run():
    for module in RECORD_READERS:
        source = (ROOT / PACKAGE / f"{module}.py").read_text()
        assert reaching_into_objects(source) == [], module


def test_their_entry_points_take_the_records():
    from gradcheck import _mixed, _modes, _routes, _second_order
    from gradcheck._records import Declared, Evaluations, ForwardBackward, Reference

    for function, records, report in (
            (_second_order.check_second_order, [ForwardBackward, Reference], {"add", "skip"}),
            (_mixed.check_policies, [ForwardBackward], {"add", "skip"}),
            (_modes.check_modes, [ForwardBackward, Reference], {"add"}),
            (_routes.compare, [ForwardBackward, Reference, Evaluations, Declared],
             {"add", "vjp"})):
        hints = typing.get_type_hints(function)
        parameters = list(inspect.signature(function).parameters)
        assert [hints[name] for name in parameters[:len(records)]] == records, function
        assert report <= set(parameters), function
