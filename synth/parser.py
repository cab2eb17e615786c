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
from lark.lexer import LexerThread

from mantra6g.errors import Diagnostic, Note, SpecError
from mantra6g.source import SourceFile, Span, shorten
from mantra6g.synth import ast

UNITS_HINT = "units: ns us ms s | bps kbps Mbps Gbps Tbps | B KB MB GB KiB MiB GiB | %"
_MAX_ERRORS = 50

# Limits of the language (docs/language.md, "Limits"). Every stage after the parser
# walks expressions recursively; MAX_NESTING keeps that far inside Python's stack.
MAX_LINE = 10_000  # characters in one line
MAX_NESTING = 64  # levels of ( ), [ ] and not, counted together
_OPEN = {"LPAR": "(", "LSQB": "["}
_CLOSE = {"RPAR": "LPAR", "RSQB": "LSQB"}

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


@functools.cache
def _lexer():
    # What Lark.lex builds on every call (lark 1.3; LALR keeps no lexer of its own for
    # lex()): built once, and driven through a LexerThread so lexing can resume.
    return _lark()._build_lexer()


def parse(text: str, filename: str = "<input>") -> ast.SpecFile:
    """Parse one file. Raises :class:`SpecError` listing every syntax error found."""
    source = SourceFile(filename, text.removeprefix("\ufeff"))  # a byte-order mark is not text
    diagnostics: list[Diagnostic] = []
    _check_lines(source, diagnostics)
    tokens = _tokens(source, diagnostics)
    _check_nesting(source, tokens, diagnostics)
    tree = _parse_tokens(source, tokens, diagnostics)
    if diagnostics or tree is None:
        raise SpecError(diagnostics, {filename: source})
    return _ToAst(filename).transform(tree)


def _check_lines(source: SourceFile, diagnostics: list[Diagnostic]) -> None:
    for n, line in enumerate(source.text.split("\n"), start=1):
        if len(line) > MAX_LINE:
            diagnostics.append(Diagnostic(
                f"line {n} is {len(line)} characters long; a line may have at most {MAX_LINE}",
                Span(source.name, n, MAX_LINE + 1, n, MAX_LINE + 2),
                "wrap it: newlines inside ( ) and [ ] do not end a statement",
            ))


def _check_nesting(source: SourceFile, tokens: list[Token], diagnostics: list[Diagnostic]) -> None:
    """Report an expression nested deeper than :data:`MAX_NESTING` (once per statement),
    at the ``(``, ``[`` or ``not`` that goes one level too deep."""
    open_: list[Token] = []
    reported = False
    for tok in tokens:
        t = tok.type
        if t in ("LPAR", "LSQB", "NOT"):
            if len(open_) >= MAX_NESTING and not reported:
                kinds = [o.type for o in open_]
                hint = max(
                    (kinds.count("NOT"), "'not not X' is X: remove pairs of 'not'"),
                    (kinds.count("LPAR"), "parentheses around a single test are not needed; or split the rule in two"),
                    (kinds.count("LSQB"), "a list holds values, not other lists"),
                )[1]
                diagnostics.append(Diagnostic(
                    f"expression nested too deeply: more than {MAX_NESTING} levels of ( ), [ ] and not",
                    _tok_span(source, tok), hint,
                ))
                reported = True
            open_.append(tok)
        elif t in _CLOSE:
            while open_ and open_[-1].type == "NOT":
                open_.pop()
            if open_:
                open_.pop()
        elif t in ("AND", "OR", "COMMA"):  # a 'not' binds tighter: its operand has ended
            while open_ and open_[-1].type == "NOT":
                open_.pop()
        elif t in ("_NL", "LBRACE", "RBRACE"):  # the statement has ended
            open_.clear()
            reported = False


def _tok_span(source: SourceFile, tok: Token) -> Span:
    end = tok.end_column if tok.end_line == tok.line else tok.column + 1
    return Span(source.name, tok.line, tok.column, tok.line, max(end, tok.column + 1))


# ---------------------------------------------------------------- lexing


def _tokens(source: SourceFile, diagnostics: list[Diagnostic]) -> list[Token]:
    """Lex the whole file; a character no token can start is reported and skipped (as
    a space would be). Lexing resumes after it, so a file full of them stays linear."""
    text = source.text
    thread = LexerThread.from_text(_lexer(), text)
    raw: list[Token] = []
    while True:
        try:
            raw.extend(thread.lex(None))
            break
        except UnexpectedCharacters as e:
            if not any(d.span.line == e.line for d in diagnostics):  # one per line is enough
                diagnostics.append(
                    _malformed_literal(source, e.line, e.column)
                    or Diagnostic(
                        f"unexpected character {text[e.pos_in_stream]!r}",
                        Span(source.name, e.line, e.column, e.line, e.column + 1),
                        _char_hint(text[e.pos_in_stream]),
                    )
                )
            if len(diagnostics) >= _MAX_ERRORS:
                return []
            thread.state.line_ctr.feed(text[e.pos_in_stream])  # the lexer stopped at it
    # Newlines inside (...) and [...] only wrap a long line; runs of newlines are one.
    # No bracket holds a brace: one left open ends at the next '{' or '}', so that the
    # statements after it are read as statements again.
    out: list[Token] = []
    depth = 0
    for tok in raw:
        if tok.type in ("LPAR", "LSQB"):
            depth += 1
        elif tok.type in ("RPAR", "RSQB"):
            depth = max(0, depth - 1)
        elif tok.type in ("LBRACE", "RBRACE"):
            depth = 0
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
                diagnostics.append(_syntax_error(source, tokens, checkpoint_at, i, e))
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
    return repr(shorten(str(tok), 40))


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


def _syntax_error(source: SourceFile, tokens: list[Token], start: int, i: int, e: UnexpectedToken) -> Diagnostic:
    """The diagnostic for ``tokens[i]``, unexpected in the statement begun at ``start``."""
    tok = tokens[i]
    span = _tok_span(source, tok)
    message = f"unexpected {_describe(tok)}{_expected(set(e.expected))}"
    unclosed = _unclosed_bracket(tokens, start, i)
    if unclosed is not None:
        opener = _OPEN[unclosed.type]
        closer = ")" if opener == "(" else "]"
        return Diagnostic(
            f"this '{opener}' is never closed",
            _tok_span(source, unclosed),
            f"add the missing '{closer}' (newlines inside ( ) and [ ] do not end a statement)",
            (Note(f"the parser gave up here: {message}", span),),
        )
    if tok.type in ("COLON", "DOT", "MINUS") or tok.type in ("INT", "NAME", "FLOAT", "IPV4"):
        literal = _malformed_literal(source, tok.line, tok.column)
        if literal is not None:
            return literal
    hint = None
    prev = tokens[i - 1] if i > 0 else None
    if (
        tok.type == "NAME"
        and prev is not None
        and prev.type in ("INT", "FLOAT")
        and prev.line == tok.line
    ):
        hint = f"'{shorten(str(tok), 40)}' is not a unit; {UNITS_HINT}"
    elif tok.type != "NAME" and _KEYWORD.match(str(tok)) and "NAME" in e.expected:
        hint = f"'{tok}' is a reserved word; choose another name"
    elif tok.type == "LBRACE":
        hint = _block_hint(tokens, start, i)
    return Diagnostic(message, span, hint)


def _unclosed_bracket(tokens: list[Token], start: int, i: int) -> Token | None:
    """The innermost ``(`` or ``[`` open at ``tokens[i]`` (in the statement begun at
    ``start``) that nothing after it closes, or None."""
    open_: list[Token] = []
    for tok in tokens[start:i]:
        if tok.type in _OPEN:
            open_.append(tok)
        elif tok.type in _CLOSE and open_:
            open_.pop()
    if not open_:
        return None
    depth = 0
    for tok in tokens[i:]:
        if tok.type in _OPEN:
            depth += 1
        elif tok.type in _CLOSE:
            if depth == 0:  # the first closer at its level: its own, or a mismatched one
                return None if _CLOSE[tok.type] == open_[-1].type else open_[-1]
            depth -= 1
        elif tok.type in ("LBRACE", "RBRACE"):  # no bracket holds a brace
            return open_[-1]
    return open_[-1]


def _block_hint(tokens: list[Token], start: int, i: int) -> str | None:
    """How the statement begun at ``start`` is written, when its ``{`` came too early;
    in the user's own names where they gave them."""
    words = tokens[start:i]
    keyword = str(words[0]) if words else ""
    name = str(words[1]) if len(words) > 1 and words[1].type == "NAME" else "NAME"
    if keyword == "tenant":
        # `tenant acme { id 1 }`: the id, if given in the block, is the user's id.
        after = tokens[i + 1 : i + 3]
        tid = str(after[1]) if len(after) == 2 and after[0].type == "ID" and after[1].type == "INT" else "N"
        return f"a tenant is declared with its name and id before the block: tenant {name} id {tid} {{ ... }}"
    if keyword == "slice":
        return f"a slice is declared with its name before the block: slice {name} {{ latency <= 10 ms }}"
    if keyword == "graph":
        return f"a graph names the slice it serves before the block: graph {name} for TENANT.SLICE {{ ... }}"
    if keyword == "nf" and i > 0 and tokens[i - 1].type == "NAME":
        return f"an nf declaration needs parentheses before its rules: {tokens[i - 1]}(...) {{ ... }}"
    return None


_MAC_PART = re.compile(r"[0-9A-Za-z]{1,2}\Z")
_HEX_PART = re.compile(r"[0-9A-Fa-f]{2}\Z")


def _malformed_literal(source: SourceFile, line: int, column: int) -> Diagnostic | None:
    """A diagnostic for a MAC or IPv4 address the lexer could not read (five bytes,
    a 'g' among the hex digits, dashes; three numbers), or None if the text around
    ``line:column`` does not look like one."""
    text = source.line_text(line)
    at = column - 1
    for chars, check in (("0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ:-", _mac_problem),
                         ("0123456789./", _ipv4_problem)):
        lo = hi = at
        while lo > 0 and text[lo - 1] in chars:
            lo -= 1
        while hi < len(text) and text[hi] in chars:
            hi += 1
        word = text[lo:hi]
        problem = check(word) if word else None
        if problem is not None:
            return Diagnostic(f"'{shorten(word, 40)}' is not {problem[0]}", Span(source.name, line, lo + 1, line, hi + 1), problem[1])
    return None


def _mac_problem(word: str) -> tuple[str, str] | None:
    parts = re.split("[:-]", word)
    if len(parts) < 3 or not all(_MAC_PART.match(p) for p in parts):
        return None
    if sum(bool(re.fullmatch("[0-9A-Fa-f]+", p)) for p in parts) * 2 < len(parts):
        return None  # mostly words: not an attempt at an address
    example = "a MAC address is six two-digit hex bytes separated by ':', e.g. 02:00:00:00:00:01"
    if "-" in word:
        return "a MAC address", example.replace("separated by ':'", "separated by ':', not '-'")
    if len(parts) != 6:
        return "a MAC address", f"it has {len(parts)} bytes; {example}"
    bad = next((p for p in parts if not _HEX_PART.match(p)), None)
    return "a MAC address", f"'{bad}' is not a two-digit hex byte; {example}"


def _ipv4_problem(word: str) -> tuple[str, str] | None:
    address = word.partition("/")[0]
    parts = address.split(".")
    if len(parts) < 3 or len(parts) == 4 or ".." in word or not all(p.isdigit() for p in parts):
        return None
    what = "an IPv4 prefix" if "/" in word else "an IPv4 address"
    return what, f"it has {len(parts)} numbers; an IPv4 address has four, e.g. 10.0.0.1"


def _eof_error(source: SourceFile, tokens: list[Token], e: UnexpectedInput) -> Diagnostic:
    unclosed = _unclosed_bracket(tokens, 0, len(tokens))
    if unclosed is not None:
        return Diagnostic(
            f"unexpected end of file: this '{_OPEN[unclosed.type]}' is never closed",
            _tok_span(source, unclosed),
            f"add the missing '{')' if unclosed.type == 'LPAR' else ']'}'",
        )
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
        devices = tuple(c for c in children if isinstance(c, ast.DeviceDecl))
        return ast.SpecFile(self.file, tenants, graphs, devices)

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

    # -- the operator's device plan
    def _device(self, children, span):
        device, site, *rules = children
        return ast.DeviceDecl(self._ident(device), self._ident(site) if site is not None else None,
                              tuple(r for r in rules if isinstance(r, ast.Rule)), span)

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
