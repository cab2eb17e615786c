"""Parse ``.sg`` text into the AST, reporting every syntax error with line, column and caret.

The grammar lives in ``servicegraph.lark``. Parsing is LALR(1) over a pre-lexed token
stream so that a syntax error does not end the parse: the parser is rolled back to the
start of the offending statement, the statement is skipped up to its end of line (or
the ``}`` that closes its block) and parsing goes on. Every independent syntax error
in a file is therefore reported at once; semantic checks run only on files that parse.
"""

from __future__ import annotations

import functools
import re
from importlib import resources

from lark import Lark, Token, Transformer, Tree
from lark.exceptions import UnexpectedCharacters, UnexpectedInput, UnexpectedToken

from mantra6g.errors import Diagnostic, SpecError
from mantra6g.source import SourceFile, Span
from mantra6g.synth import ast

UNITS_HINT = "units: ns us ms s | bps kbps Mbps Gbps Tbps | B KB MB GB KiB MiB GiB | %"
_MAX_ERRORS = 50

# How terminals are named in messages; string terminals are shown as themselves.
_TERMINAL_NAMES = {
    "NAME": "a name",
    "INT": "a number",
    "FLOAT": "a number",
    "QUANTITY": "a quantity such as 1 ms or 10 Mbps",
    "ESCAPED_STRING": "a string",
    "IPV4": "an IPv4 address",
    "IPV4_PREFIX": "an IPv4 prefix",
    "IPV6": "an IPv6 address",
    "IPV6_PREFIX": "an IPv6 prefix",
    "MAC": "a MAC address",
    "CMP": "a comparison (== != < <= > >=)",
    "_NL": "end of line",
    "$END": "end of file",
}


@functools.cache
def _lark() -> Lark:
    grammar = resources.files("mantra6g.synth").joinpath("servicegraph.lark").read_text()
    return Lark(
        grammar,
        parser="lalr",
        lexer="basic",
        propagate_positions=True,
        maybe_placeholders=True,
    )


def parse(text: str, filename: str = "<input>") -> ast.SpecFile:
    """Parse one file. Raises :class:`SpecError` listing every syntax error found."""
    source = SourceFile(filename, text)
    diagnostics: list[Diagnostic] = []
    tokens = _tokens(source, diagnostics)
    tree = _parse_tokens(source, tokens, diagnostics)
    if diagnostics or tree is None:
        raise SpecError(diagnostics, {filename: source})
    return _ToAst(filename).transform(tree)


# ---------------------------------------------------------------- lexing


def _tokens(source: SourceFile, diagnostics: list[Diagnostic]) -> list[Token]:
    """Lex the whole file; a character no token can start is reported and blanked out."""
    text = source.text
    lark = _lark()
    while True:
        try:
            raw = list(lark.lex(text))
            break
        except UnexpectedCharacters as e:
            if not any(d.span.line == e.line for d in diagnostics):  # one per line is enough
                diagnostics.append(
                    Diagnostic(
                        f"unexpected character {text[e.pos_in_stream]!r}",
                        Span(source.name, e.line, e.column, e.line, e.column + 1),
                        _char_hint(text[e.pos_in_stream]),
                    )
                )
            if len(diagnostics) >= _MAX_ERRORS:
                return []
            text = text[: e.pos_in_stream] + " " + text[e.pos_in_stream + 1 :]
    # Newlines inside (...) and [...] only wrap a long line; runs of newlines are one.
    out: list[Token] = []
    depth = 0
    for tok in raw:
        if tok.type in ("LPAR", "LSQB"):
            depth += 1
        elif tok.type in ("RPAR", "RSQB"):
            depth = max(0, depth - 1)
        elif tok.type == "_NL" and (depth > 0 or (out and out[-1].type == "_NL")):
            continue
        out.append(tok)
    return out


def _char_hint(ch: str) -> str | None:
    if ch in "{}":
        return None
    if ch == ";":
        return "statements end at the end of the line; remove the ';'"
    if ch == "'":
        return 'strings use double quotes: "text"'
    if ch in "&|!":
        return "boolean operators are written 'and', 'or' and 'not'"
    return None


# ---------------------------------------------------------------- parsing with recovery


def _parse_tokens(
    source: SourceFile, tokens: list[Token], diagnostics: list[Diagnostic]
) -> Tree | None:
    lark = _lark()
    parser = lark.parse_interactive(start="start")
    # The parser state at the start of the current statement and the token index there.
    checkpoint, checkpoint_at = parser.copy(deepcopy_values=False), 0
    bad_lines = {d.span.line for d in diagnostics if d.span}
    i = 0
    retried: int | None = None
    while i < len(tokens):
        tok = tokens[i]
        try:
            parser.feed_token(tok)
        except UnexpectedToken as e:
            if tok.line not in bad_lines:
                diagnostics.append(_syntax_error(source, tokens, i, e))
                bad_lines.add(tok.line)
            if len(diagnostics) >= _MAX_ERRORS:
                return None
            parser = checkpoint.copy(deepcopy_values=False)
            i = retried = _skip_statement(tokens, checkpoint_at, i, retried)
            continue
        i += 1
        if tok.type in ("_NL", "LBRACE"):
            checkpoint, checkpoint_at = parser.copy(deepcopy_values=False), i
    try:
        return parser.feed_eof(tokens[-1] if tokens else None)
    except UnexpectedInput as e:
        if not diagnostics:
            diagnostics.append(_eof_error(source, tokens, e))
        return None


def _skip_statement(tokens: list[Token], start: int, failed_at: int, retried: int | None) -> int:
    """Where to resume after the statement begun at ``start`` failed at ``failed_at``:
    after the end of line that ends it, or at the ``}`` that closes the enclosing block.

    Progress is guaranteed: the result is past ``failed_at``, except that a failing
    ``}`` is retried once from the statement's start (it may close the block the
    broken statement was in) unless it was the last resume point (``retried``).
    """
    depth = 0
    for i in range(start, len(tokens)):
        t = tokens[i].type
        if t == "LBRACE":
            depth += 1
        elif t == "RBRACE":
            if depth > 0:
                depth -= 1
            elif i > failed_at or (i == failed_at and retried != i):
                return i
        elif t == "_NL" and depth == 0 and i >= failed_at:
            return i + 1
    return len(tokens)


def _describe(tok: Token) -> str:
    if tok.type == "$END":
        return "end of file"
    if tok.type == "_NL":
        return "end of line"
    return repr(str(tok))


def _expected(names: set[str]) -> str:
    lark = _lark()
    shown: list[str] = []
    for name in sorted(names):
        if name in _TERMINAL_NAMES:
            text = _TERMINAL_NAMES[name]
        else:
            try:
                pattern = lark.get_terminal(name).pattern
            except KeyError:
                continue
            text = f"'{pattern.value}'" if pattern.type == "str" else name.lower()
        if text not in shown:
            shown.append(text)
    if not shown:
        return ""
    if len(shown) > 8:
        shown = shown[:8] + ["..."]
    return "; expected " + (shown[0] if len(shown) == 1 else "one of: " + ", ".join(shown))


_KEYWORD = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")


def _syntax_error(source: SourceFile, tokens: list[Token], i: int, e: UnexpectedToken) -> Diagnostic:
    tok = tokens[i]
    end = tok.end_column if tok.end_line == tok.line else tok.column + 1
    span = Span(source.name, tok.line, tok.column, tok.line, max(end, tok.column + 1))
    hint = None
    prev = tokens[i - 1] if i > 0 else None
    if (
        tok.type == "NAME"
        and prev is not None
        and prev.type in ("INT", "FLOAT")
        and prev.line == tok.line
    ):
        hint = f"'{tok}' is not a unit; {UNITS_HINT}"
    elif tok.type != "NAME" and _KEYWORD.match(str(tok)) and "NAME" in e.expected:
        hint = f"'{tok}' is a reserved word; choose another name"
    elif tok.type == "LBRACE" and prev is not None and prev.type != "RPAR":
        hint = "an nf declaration needs parentheses before its rules: KIND(...) { ... }"
    return Diagnostic(f"unexpected {_describe(tok)}{_expected(set(e.expected))}", span, hint)


def _eof_error(source: SourceFile, tokens: list[Token], e: UnexpectedInput) -> Diagnostic:
    open_braces: list[Token] = []
    for t in tokens:
        if t.type == "LBRACE":
            open_braces.append(t)
        elif t.type == "RBRACE" and open_braces:
            open_braces.pop()
    if open_braces:
        b = open_braces[-1]
        return Diagnostic(
            "unexpected end of file: this '{' is never closed",
            Span(source.name, b.line, b.column, b.line, b.column + 1),
            "add a '}' on a line of its own to close the block",
        )
    last = tokens[-1] if tokens else None
    line = last.line if last else 1
    col = last.column if last else 1
    expected = _expected(set(getattr(e, "expected", ()) or ()))
    return Diagnostic(f"unexpected end of file{expected}", Span(source.name, line, col, line, col + 1))


# ---------------------------------------------------------------- tree to AST


class _ToAst(Transformer):
    """One method per grammar rule, each returning an :mod:`ast` node with its span."""

    def __init__(self, filename: str):
        super().__init__()
        self.file = filename

    def _span(self, meta) -> Span:
        if getattr(meta, "empty", True):
            return Span(self.file, 1, 1, 1, 1)
        return Span(self.file, meta.line, meta.column, meta.end_line, meta.end_column)

    def _tok_span(self, tok: Token) -> Span:
        return Span(self.file, tok.line, tok.column, tok.end_line, tok.end_column)

    def _ident(self, tok: Token) -> ast.Ident:
        return ast.Ident(str(tok), self._tok_span(tok))

    def _lit(self, kind: str, tok: Token) -> ast.Literal:
        return ast.Literal(kind, str(tok), self._tok_span(tok))

    # Lark passes (children) by default; positions come from the tree, hence __default__.
    def __default__(self, data, children, meta):
        method = getattr(self, f"_{data}", None)
        if method is None:  # pragma: no cover - grammar and transformer out of step
            raise AssertionError(f"no AST rule for {data}")
        return method([c for c in children], self._span(meta))

    # -- file
    def _start(self, children, span):
        tenants = tuple(c for c in children if isinstance(c, ast.TenantDecl))
        graphs = tuple(c for c in children if isinstance(c, ast.GraphDecl))
        return ast.SpecFile(self.file, tenants, graphs)

    # -- tenants
    def _tenant(self, children, span):
        name, id_tok, *body = children
        return ast.TenantDecl(
            self._ident(name),
            self._lit("int", id_tok),
            tuple(c for c in body if isinstance(c, ast.SliceDecl)),
            tuple(c for c in body if isinstance(c, ast.SlaTerm)),
            span,
        )

    def _slice(self, children, span):
        name, *terms = children
        return ast.SliceDecl(self._ident(name), tuple(t for t in terms if t is not None), span)

    def _sla_term(self, children, span):
        name, op, value = children
        return ast.SlaTerm(self._ident(name), str(op) if op is not None else None, value, span)

    # -- graphs
    def _graph(self, children, span):
        name, tenant, slice_, *body = children
        return ast.GraphDecl(
            self._ident(name),
            self._ident(tenant),
            self._ident(slice_),
            tuple(c for c in body if isinstance(c, ast.NfDecl)),
            tuple(c for c in body if isinstance(c, ast.ChainDecl)),
            tuple(c for c in body if isinstance(c, ast.PlaceDecl)),
            span,
        )

    def _nf(self, children, span):
        name, kind, *rest = children
        return ast.NfDecl(
            self._ident(name),
            self._ident(kind),
            tuple(c for c in rest if isinstance(c, ast.Param)),
            tuple(c for c in rest if isinstance(c, ast.Rule)),
            span,
        )

    def _param(self, children, span):
        name, value = children
        return ast.Param(self._ident(name), value, span)

    def _rule(self, children, span):
        # An omitted [_rule_head] leaves no placeholder (it is an inlined rule).
        keyword, *rest = children
        options = tuple(c for c in rest if isinstance(c, ast.RuleOption))
        head = next((c for c in rest if c is not None and not isinstance(c, ast.RuleOption)), None)
        return ast.Rule(self._ident(keyword), head, options, span)

    def _option(self, children, span):
        name, value = children
        return ast.RuleOption(self._ident(name), value, span)

    def _chain(self, children, span):
        start, *hops = children
        return ast.ChainDecl(self._ident(start), tuple(hops), span)

    def _hop(self, children, span):
        condition, target = children
        return ast.Hop(self._ident(target), condition, span)

    def _branch(self, children, span):
        return children[0]

    def _place(self, children, span):
        *nfs, device, site = children
        return ast.PlaceDecl(
            tuple(self._ident(n) for n in nfs),
            self._ident(device),
            self._ident(site) if site is not None else None,
            span,
        )

    # -- expressions
    # A rule with '?' and an alias still makes a node for one child; fold it here.
    def _any_of(self, children, span):
        return children[0] if len(children) == 1 else ast.AnyOf(tuple(children), span)

    def _all_of(self, children, span):
        return children[0] if len(children) == 1 else ast.AllOf(tuple(children), span)

    def _negation(self, children, span):
        return ast.Negation(children[0], span)

    def _compare(self, children, span):
        field, op, value = children
        return ast.Compare(field, str(op), value, span)

    def _membership(self, children, span):
        field, value = children
        return ast.Compare(field, "in", value, span)

    def _field(self, children, span):
        header, name = children
        return ast.FieldRef(str(header), str(name), span)

    # -- values
    def _name(self, children, span):
        return self._lit("name", children[0])

    def _integer(self, children, span):
        return self._lit("int", children[0])

    def _decimal(self, children, span):
        return self._lit("float", children[0])

    def _quantity(self, children, span):
        return self._lit("quantity", children[0])

    def _string(self, children, span):
        return self._lit("string", children[0])

    def _ipv4(self, children, span):
        return self._lit("ipv4", children[0])

    def _ipv4_prefix(self, children, span):
        return self._lit("ipv4_prefix", children[0])

    def _ipv6(self, children, span):
        return self._lit("ipv6", children[0])

    def _ipv6_prefix(self, children, span):
        return self._lit("ipv6_prefix", children[0])

    def _mac(self, children, span):
        return self._lit("mac", children[0])

    def _range(self, children, span):
        low, high = (self._lit("int" if t.type == "INT" else "name", t) for t in children)
        return ast.RangeLit(low, high, span)

    def _ratio(self, children, span):
        num, den = children
        return ast.RatioLit(self._lit("int", num), self._lit("int", den), span)

    def _list(self, children, span):
        return ast.ListLit(tuple(c for c in children if c is not None), span)
