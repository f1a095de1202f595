"""Which eval.json figures a card template reads, found by walking the template's syntax tree.

The release refuses an eval.json that lacks a figure its card would print *before* writing anything,
and names the figure. The list of those figures is derived here from the templates in use (the
user's ``--cards`` ones included), never kept by hand:

* a figure printed, formatted or compared outside any ``{% if %}`` branch is **required** (present
  and not null; a list it loops over must not be empty);
* a figure only tested (``x is none``, ``if x``) outside a branch must be **present** (null allowed);
  ``x is defined`` asks whether an optional section is there and requires nothing;
* anything read inside a branch (``{% if %}``, ``a if t else b``, the right side of ``and``/``or``)
  is optional: the branch is the template's own guard.

Paths are dotted from the eval.json root; ``*`` stands for every item of a list. Aliases are
followed (``{% set rt = ev.figures.round_trip %}``, ``{% for t in id.top %}``) and so are macro
calls into imported templates (``{% import "_eval.md.j2" as E %}`` … ``E.headline(ev)``).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from jinja2 import Environment, nodes

EV = "ev"  # the context name of the eval.json dict in model and trajectory templates
_ITEM_FILTERS = {"first", "last", "random"}
_LIST_FILTERS = {"selectattr", "rejectattr", "sort", "reverse", "list", "unique", "batch", "slice"}


@dataclass
class Reads:
    """Figures a template reads unconditionally: ``required`` (non-null) and ``present`` (may be null)."""

    required: list[str] = field(default_factory=list)
    present: list[str] = field(default_factory=list)

    def add(self, path: str, value: bool) -> None:
        target = self.required if value else self.present
        if path not in target:
            target.append(path)

    def finish(self) -> Reads:
        """Drop `present` paths that are also required, and prefixes of longer required paths."""
        req = [p for p in self.required if not any(q.startswith(p + ".") for q in self.required)]
        pres = [p for p in self.present if p not in self.required]
        return Reads(req, pres)


class _Walker:
    def __init__(self, env: Environment) -> None:
        self.env = env
        self.reads = Reads()
        self.modules: dict[str, dict[str, nodes.Macro]] = {}
        self.depth = 0

    # -- expressions -----------------------------------------------------------------------------
    def resolve(self, node: nodes.Node, scope: dict) -> str | None:
        """The eval.json path an expression stands for, or None when it is not rooted in eval.json."""
        if isinstance(node, nodes.Name):
            return scope.get(node.name)
        if isinstance(node, nodes.Getattr):
            base = self.resolve(node.node, scope)
            return None if base is None else f"{base}.{node.attr}".lstrip(".")
        if isinstance(node, nodes.Getitem):
            base = self.resolve(node.node, scope)
            if base is None:
                return None
            key = node.arg.value if isinstance(node.arg, nodes.Const) else None
            return f"{base}.{key if isinstance(key, str) else '*'}".lstrip(".")
        if isinstance(node, nodes.Filter) and node.node is not None:
            base = self.resolve(node.node, scope)
            if base is None:
                return None
            if node.name in _ITEM_FILTERS:
                return f"{base}.*".lstrip(".")
            return base if node.name in _LIST_FILTERS else None
        return None

    def expr(self, node: nodes.Node, scope: dict, cond: bool, value: bool = True) -> None:
        """Record the figures an expression reads; `cond`: inside a branch; `value`: used, not only tested."""
        path = self.resolve(node, scope)
        if path is not None and path != "":
            if not cond:
                self.reads.add(path, value)
            if isinstance(node, nodes.Filter):  # a list filter's arguments may read too
                self._children(node.args, scope, cond)
            return
        if isinstance(node, nodes.Test):
            # `x is defined` asks whether an optional section is there: it never requires it
            self.expr(node.node, scope, cond or node.name in ("defined", "undefined"), value=False)
            self._children(node.args, scope, cond)
        elif isinstance(node, nodes.CondExpr):
            self.expr(node.test, scope, cond, value=False)
            self.expr(node.expr1, scope, True)
            if node.expr2 is not None:
                self.expr(node.expr2, scope, True)
        elif isinstance(node, (nodes.And, nodes.Or)):
            self.expr(node.left, scope, cond, value=False)
            self.expr(node.right, scope, True, value=False)
        elif isinstance(node, nodes.Not):
            self.expr(node.node, scope, cond, value=False)
        elif isinstance(node, nodes.Call):
            self.call(node, scope, cond)
        elif isinstance(node, (nodes.Filter, nodes.Compare, nodes.BinExpr, nodes.UnaryExpr, nodes.Concat)):
            self._children(list(node.iter_child_nodes()), scope, cond)
        else:  # anything else: what it reads is optional
            self._children(list(node.iter_child_nodes()), scope, True)

    def _children(self, items: list, scope: dict, cond: bool) -> None:
        for child in items:
            if isinstance(child, nodes.Operand):
                self.expr(child.expr, scope, cond)
            elif isinstance(child, nodes.Expr):
                self.expr(child, scope, cond)

    def call(self, node: nodes.Call, scope: dict, cond: bool) -> None:
        """A macro call: walk the macro's body with its parameters bound to the call's arguments."""
        macro = None
        if isinstance(node.node, nodes.Getattr) and isinstance(node.node.node, nodes.Name):
            macro = self.modules.get(node.node.node.name, {}).get(node.node.attr)
        elif isinstance(node.node, nodes.Name):
            macro = self.modules.get("", {}).get(node.node.name)
        if macro is None or self.depth > 8:
            self._children([*node.args, *(k.value for k in node.kwargs)], scope, True)
            return
        inner = {a.name: self.resolve(v, scope) for a, v in zip(macro.args, node.args)}
        inner |= {kw.key: self.resolve(kw.value, scope) for kw in node.kwargs}
        self.depth += 1
        self.body(macro.body, inner, cond)
        self.depth -= 1

    # -- statements -------------------------------------------------------------------------------
    def body(self, stmts: list, scope: dict, cond: bool) -> None:
        scope = dict(scope)
        for node in stmts:
            self.stmt(node, scope, cond)

    def stmt(self, node: nodes.Node, scope: dict, cond: bool) -> None:
        if isinstance(node, nodes.Output):
            for child in node.nodes:
                if not isinstance(child, nodes.TemplateData):
                    self.expr(child, scope, cond)
        elif isinstance(node, nodes.If):
            self.expr(node.test, scope, cond, value=False)
            for branch in (node.body, *(e.body for e in node.elif_), node.else_):
                self.body(branch, scope, True)
            for e in node.elif_:
                self.expr(e.test, scope, True, value=False)
        elif isinstance(node, nodes.For):
            self.expr(node.iter, scope, cond)
            inner = dict(scope)
            path = self.resolve(node.iter, scope)
            if isinstance(node.target, nodes.Name):
                inner[node.target.name] = f"{path}.*".lstrip(".") if path is not None else None
            if node.test is not None:
                self.expr(node.test, inner, True, value=False)
            self.body(node.body, inner, cond)
            self.body(node.else_, scope, True)
        elif isinstance(node, nodes.Assign) and isinstance(node.target, nodes.Name):
            scope[node.target.name] = self.resolve(node.node, scope)
            if scope[node.target.name] is None:
                self.expr(node.node, scope, cond)
        elif isinstance(node, nodes.Import) and isinstance(node.template, nodes.Const):
            self.modules[node.target] = self.macros(node.template.value)
        elif isinstance(node, nodes.Macro):
            self.modules.setdefault("", {})[node.name] = node
        elif isinstance(node, (nodes.Include, nodes.Extends)):
            pass  # an included partial is the partial's own business (and guarded where it is used)
        else:
            self.body([c for c in node.iter_child_nodes() if isinstance(c, nodes.Stmt)], scope, True)

    def macros(self, name: str) -> dict[str, nodes.Macro]:
        source, _, _ = self.env.loader.get_source(self.env, name)  # type: ignore[union-attr]
        tree = self.env.parse(source)
        return {m.name: m for m in tree.find_all(nodes.Macro)}


def template_reads(env: Environment, template: str, root: str = EV) -> Reads:
    """The eval.json figures `template` reads (via the context name `root`), from its source."""
    source, _, _ = env.loader.get_source(env, template)  # type: ignore[union-attr]
    walker = _Walker(env)
    walker.body(env.parse(source).body, {root: ""}, False)
    return walker.reads.finish()
