"""OpenFGA DSL (schema 1.1) → authorization-model JSON, as ``fga model transform`` prints it.

Mirrors openfga/language: the same comment stripping (a line starting with ``#``, or text after
`` #``), the same tokens (``OpenFGALexer.g4``: longest match, first rule wins a tie; ``condition``
switches to the parameter-list mode) and the same grammar (``OpenFGAParser.g4``): one operator kind
per expression level (``a or b and c`` needs parentheses), a single ``but not``, direct type
restrictions only at the head of an expression. Syntax only: semantic checks live in
``espomcp.fga.validation``. Errors are ``DslSyntaxError`` with 1-based line and column.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from espomcp.fga.errors import INVALID_AUTHORIZATION_MODEL, FgaError


class DslSyntaxError(FgaError):
    """A DSL syntax error at ``line``/``column`` (1-based)."""

    def __init__(self, message: str, line: int, column: int) -> None:
        text = f"syntax error at line {line}, column {column}: {message}"
        super().__init__(INVALID_AUTHORIZATION_MODEL, text)
        self.line = line
        self.column = column


@dataclass(frozen=True, slots=True)
class Token:
    kind: str
    text: str
    line: int
    column: int


_ESC = r"""\\(?:[abfnrtv"'\\?`]|[0-3][0-7][0-7]|[xX][0-9a-fA-F]{2}|u[0-9a-fA-F]{4}|U[0-9a-fA-F]{8})"""
_STRING = (rf'"""(?:{_ESC}|[^\\])*?"""|\'\'\'(?:{_ESC}|[^\\])*?\'\'\''
           rf'|"(?:{_ESC}|[^\\"\n\r])*"|\'(?:{_ESC}|[^\\\'\n\r])*\''
           r'|[rR]"""[\s\S]*?"""|[rR]\'\'\'[\s\S]*?\'\'\'|[rR]"[^"\n\r]*"|[rR]\'[^\'\n\r]*\'')
_WS = r"[\t \f]+"
# Default-mode rules in grammar order (a tie in length goes to the earlier rule).
_DEFAULT_RULES: list[tuple[str, str]] = [
    ("HASH", "#"), ("COLON", ":"), ("COMMA", ","), ("AND", "and"), ("OR", "or"), ("BUT_NOT", "but not"),
    ("FROM", "from"), ("MODULE", "module"), ("MODEL", "model"), ("SCHEMA", "schema"),
    ("SCHEMA_VERSION", r"[0-9]+\.[0-9]+"), ("EXTEND", "extend"), ("TYPE", "type"),
    ("CONDITION", "condition"), ("RELATIONS", "relations"), ("RELATION", "relation"), ("DEFINE", "define"),
    ("KEYWORD_WITH", "with"), ("EQUALS", "=="), ("NOT_EQUALS", "!="), ("IN", "in"), ("LESS", "<"),
    ("LESS_EQUALS", "<="), ("GREATER_EQUALS", ">="), ("GREATER", ">"), ("LOGICAL_AND", "&&"),
    ("LOGICAL_OR", r"\|\|"), ("LBRACKET", r"\["), ("RBRACKET", r"\]"), ("LBRACE", r"\{"), ("RBRACE", r"\}"),
    ("LPAREN", r"\("), ("RPAREN", r"\)"), ("DOT", r"\."), ("MINUS", "-"), ("EXCLAM", "!"),
    ("QUESTIONMARK", r"\?"), ("PLUS", r"\+"), ("STAR", r"\*"), ("SLASH", "/"), ("PERCENT", "%"),
    ("CEL_TRUE", "true"), ("CEL_FALSE", "false"), ("NUL", "null"), ("WHITESPACE", _WS),
    ("CEL_COMMENT", r"//[^\n]*"),
    ("NUM_FLOAT", r"[0-9]+\.[0-9]+(?:[eE][+-]?[0-9]+)?|[0-9]+[eE][+-]?[0-9]+|\.[0-9]+(?:[eE][+-]?[0-9]+)?"),
    ("NUM_INT", r"0x[0-9a-fA-F]+|[0-9]+"), ("NUM_UINT", r"(?:0x[0-9a-fA-F]+|[0-9]+)[uU]"),
    ("STRING", _STRING), ("BYTES", rf"[bB](?:{_STRING})"),
    ("IDENTIFIER", r"[A-Za-z_][A-Za-z0-9_-]*"),
    ("EXTENDED_IDENTIFIER", r"[A-Za-z_](?:[/.-]?[A-Za-z0-9_]+)*"),
    ("NEWLINE", r"(?:[\t \f]*(?:\r?\n|\r|\f)[\t \f]*)+"),
]
_CONDITION_RULES: list[tuple[str, str]] = [
    ("RPAREN", r"\)"), ("CONDITION_PARAM_CONTAINER", "map|list"),
    ("CONDITION_PARAM_TYPE", "bool|string|int|uint|double|duration|timestamp|ipaddress"),
    ("LESS", "<"), ("GREATER", ">"), ("LPAREN", r"\("), ("COLON", ":"), ("COMMA", ","),
    ("WHITESPACE", _WS), ("IDENTIFIER", r"[A-Za-z_][A-Za-z0-9_-]*"),
]
_COMPILED = {mode: [(kind, re.compile(rx)) for kind, rx in rules]
             for mode, rules in (("default", _DEFAULT_RULES), ("condition", _CONDITION_RULES))}
# Keywords the grammar's identifier rule also accepts as type and relation names.
_NAME_KINDS = ("IDENTIFIER", "EXTENDED_IDENTIFIER", "MODULE", "MODEL", "SCHEMA", "EXTEND", "TYPE", "RELATION")


def clean_comments(text: str) -> str:
    """Blank out ``#`` comment lines and strip `` #…`` tails, exactly as openfga/language does."""
    lines = []
    for line in text.split("\n"):
        stripped = line.lstrip(" ")
        if not stripped or stripped.startswith("#"):
            lines.append("")
        else:
            lines.append(line.split(" #")[0].rstrip(" "))
    return "\n".join(lines).rstrip("\n")


def tokenize(text: str) -> list[Token]:
    """Default-channel tokens of cleaned DSL text (``CEL_COMMENT`` is hidden), ending with ``EOF``."""
    tokens: list[Token] = []
    pos, line, col, mode = 0, 1, 1, "default"
    while pos < len(text):
        best_kind, best_end = "", pos
        for kind, rx in _COMPILED[mode]:
            match = rx.match(text, pos)
            if match and match.end() > best_end:
                best_kind, best_end = kind, match.end()
        if not best_kind:
            raise DslSyntaxError(f"unexpected character {text[pos]!r}", line, col)
        chunk = text[pos:best_end]
        if best_kind != "CEL_COMMENT":
            tokens.append(Token(best_kind, chunk, line, col))
        if best_kind == "CONDITION" and mode == "default":
            mode = "condition"
        elif best_kind == "RPAREN" and mode == "condition":
            mode = "default"
        newlines = len(re.findall(r"\r\n|\r|\n", chunk))
        if newlines:
            line += newlines
            col = len(chunk) - max(chunk.rfind("\n"), chunk.rfind("\r"))
        else:
            col += len(chunk)
        pos = best_end
    tokens.append(Token("EOF", "", line, col))
    return tokens


_DESCRIBE = {"NEWLINE": "a line break", "WHITESPACE": "a space", "EOF": "the end of the model"}


def _relation_ref(type_name: str, relation: str | None = None, wildcard: bool = False,
                  condition: str | None = None) -> dict[str, Any]:
    ref: dict[str, Any] = {"type": type_name}
    if relation is not None:
        ref["relation"] = relation
    if wildcard:
        ref["wildcard"] = {}
    if condition is not None:
        ref["condition"] = condition
    return ref


class _Parser:
    def __init__(self, tokens: list[Token]) -> None:
        self.tokens = tokens
        self.pos = 0

    # ---- token helpers
    def peek(self, offset: int = 0) -> Token:
        return self.tokens[min(self.pos + offset, len(self.tokens) - 1)]

    def at(self, *kinds: str) -> bool:
        return all(self.peek(i).kind == k for i, k in enumerate(kinds))

    def accept(self, kind: str) -> Token | None:
        if self.peek().kind == kind:
            self.pos += 1
            return self.tokens[self.pos - 1]
        return None

    def expect(self, kind: str, what: str) -> Token:
        token = self.peek()
        if token.kind != kind:
            self.fail(f"expected {what}")
        self.pos += 1
        return token

    def fail(self, expected: str) -> None:
        token = self.peek()
        found = _DESCRIBE.get(token.kind, repr(token.text))
        raise DslSyntaxError(f"{expected}, found {found}", token.line, token.column)

    def name(self, what: str, kinds: tuple[str, ...] = ("IDENTIFIER",)) -> str:
        token = self.peek()
        if token.kind not in kinds:
            self.fail(f"expected {what}")
        self.pos += 1
        return token.text

    def skip_comment_lines(self) -> None:
        """``(NEWLINE multiLineComment)?`` in front of a type, relation or condition."""
        while self.at("NEWLINE", "HASH"):
            self.pos += 1
            while self.peek().kind not in ("NEWLINE", "EOF"):
                self.pos += 1

    # ---- grammar
    def main(self) -> dict[str, Any]:
        self.accept("WHITESPACE")
        self.accept("NEWLINE")
        if self.at("MODULE"):
            self.fail("expected 'model' (modular models are not supported)")
        if self.at("HASH"):
            while self.peek().kind not in ("NEWLINE", "EOF"):
                self.pos += 1
            self.accept("NEWLINE")
        self.expect("MODEL", "'model'")
        self.expect("NEWLINE", "a line break after 'model'")
        self.expect("SCHEMA", "'schema'")
        self.expect("WHITESPACE", "a space after 'schema'")
        version = self.expect("SCHEMA_VERSION", "a schema version such as 1.1").text
        self.accept("WHITESPACE")
        types: list[dict[str, Any]] = []
        conditions: dict[str, Any] = {}
        if self.at("NEWLINE", "NEWLINE"):
            self.pos += 1
        while self._next_item_is("TYPE", "EXTEND"):
            types.append(self.type_def())
        if self.at("NEWLINE", "NEWLINE"):
            self.pos += 1
        while self._next_item_is("CONDITION"):
            start = self.peek(1)
            condition = self.condition()
            if condition["name"] in conditions:
                raise DslSyntaxError(f"condition '{condition['name']}' is already defined in the model",
                                     start.line, start.column)
            conditions[condition["name"]] = condition
        self.accept("NEWLINE")
        if not self.at("EOF"):
            if self._next_item_is("TYPE"):
                self.pos += 1
                self.fail("expected a condition (types must come before conditions)")
            self.fail("expected 'type', 'condition' or the end of the model")
        model: dict[str, Any] = {"schema_version": version, "type_definitions": types}
        if conditions:
            model["conditions"] = conditions
        return model

    def _next_item_is(self, *kinds: str) -> bool:
        offset = 0
        while self.peek(offset).kind == "NEWLINE" and self.peek(offset + 1).kind == "HASH":
            offset += 2
            while self.peek(offset).kind not in ("NEWLINE", "EOF"):
                offset += 1
        return self.peek(offset).kind == "NEWLINE" and self.peek(offset + 1).kind in kinds

    def type_def(self) -> dict[str, Any]:
        self.skip_comment_lines()
        self.expect("NEWLINE", "a line break")
        if self.at("EXTEND"):
            self.fail("expected 'type' ('extend' can only be used in a modular model)")
        self.expect("TYPE", "'type'")
        self.expect("WHITESPACE", "a space after 'type'")
        type_name = self.name("a type name", _NAME_KINDS)
        type_def: dict[str, Any] = {"type": type_name}
        if not self.at("NEWLINE", "RELATIONS"):
            return type_def
        self.pos += 2
        relations: dict[str, Any] = {}
        metadata: dict[str, Any] = {}
        if not self._next_item_is("DEFINE"):
            self.accept("NEWLINE")
            self.fail("expected 'define' after 'relations'")
        while self._next_item_is("DEFINE"):
            self.skip_comment_lines()
            self.expect("NEWLINE", "a line break")
            self.expect("DEFINE", "'define'")
            self.expect("WHITESPACE", "a space after 'define'")
            start = self.peek()
            relation = self.name("a relation name", _NAME_KINDS)
            self.accept("WHITESPACE")
            self.expect("COLON", "':' after the relation name")
            self.accept("WHITESPACE")
            directs: list[dict[str, Any]] = []
            rewrite = self.relation_def(allow_direct=True, directs=directs)
            if relation in relations:
                raise DslSyntaxError(f"'{relation}' is already defined in '{type_name}'",
                                     start.line, start.column)
            relations[relation] = rewrite
            metadata[relation] = {"directly_related_user_types": directs} if directs else {}
            if self.peek().kind not in ("NEWLINE", "EOF"):
                self.fail("expected 'or', 'and', 'but not' or the end of the line")
        type_def["relations"] = relations
        type_def["metadata"] = {"relations": metadata}
        return type_def

    def relation_def(self, allow_direct: bool, directs: list[dict[str, Any]]) -> dict[str, Any]:
        """``relationDef`` / ``relationDefNoDirect``: a head and at most one operator chain."""
        if allow_direct and self.at("LBRACKET"):
            self.direct_assignment(directs)
            head: dict[str, Any] = {"this": {}}
        else:
            head = self.operand(allow_direct, directs)
        operator = ""
        children = [head]
        while self.at("WHITESPACE") and self.peek(1).kind in ("OR", "AND", "BUT_NOT"):
            kind = self.peek(1).kind
            if operator and (kind != operator or operator == "BUT_NOT"):
                self.pos += 1
                self.fail("expected ')' or the end of the definition (use parentheses to mix "
                          "'or', 'and' and 'but not')")
            operator = kind
            self.pos += 2
            self.expect("WHITESPACE", f"a space after '{self.tokens[self.pos - 1].text}'")
            if self.at("LBRACKET"):
                self.fail("expected a relation or '(' (type restrictions [...] must come first)")
            children.append(self.operand(False, directs))
        if operator == "OR":
            return {"union": {"child": children}}
        if operator == "AND":
            return {"intersection": {"child": children}}
        if operator == "BUT_NOT":
            return {"difference": {"base": children[0], "subtract": children[1]}}
        return head

    def operand(self, allow_direct: bool, directs: list[dict[str, Any]]) -> dict[str, Any]:
        """A parenthesised group or ``relation`` / ``relation from tupleset``."""
        if self.accept("LPAREN"):
            while self.accept("WHITESPACE"):
                pass
            inner = self.relation_def(allow_direct, directs)
            while self.accept("WHITESPACE"):
                pass
            self.expect("RPAREN", "')'")
            return inner
        computed = self.name("a relation name, '[' or '('", _NAME_KINDS)
        if self.at("WHITESPACE", "FROM"):
            self.pos += 2
            self.expect("WHITESPACE", "a space after 'from'")
            tupleset = self.name("a relation name after 'from'", _NAME_KINDS)
            return {"tupleToUserset": {"tupleset": {"relation": tupleset},
                                       "computedUserset": {"relation": computed}}}
        return {"computedUserset": {"relation": computed}}

    def direct_assignment(self, directs: list[dict[str, Any]]) -> None:
        self.expect("LBRACKET", "'['")
        directs.clear()
        while True:
            self.accept("WHITESPACE")
            self.accept("NEWLINE")
            directs.append(self.type_restriction())
            self.accept("NEWLINE")
            self.accept("WHITESPACE")
            if self.accept("RBRACKET"):
                return
            self.expect("COMMA", "',' or ']'")

    def type_restriction(self) -> dict[str, Any]:
        type_name = self.name("a type name", _NAME_KINDS)
        relation, wildcard, condition = None, False, None
        if self.accept("COLON"):
            self.expect("STAR", "'*' after ':'")
            wildcard = True
        elif self.accept("HASH"):
            relation = self.name("a relation name after '#'", _NAME_KINDS)
        if self.at("WHITESPACE", "KEYWORD_WITH"):
            self.pos += 2
            self.expect("WHITESPACE", "a space after 'with'")
            condition = self.name("a condition name after 'with'")
        return _relation_ref(type_name, relation, wildcard, condition)

    def condition(self) -> dict[str, Any]:
        self.skip_comment_lines()
        self.expect("NEWLINE", "a line break")
        self.expect("CONDITION", "'condition'")
        self.expect("WHITESPACE", "a space after 'condition'")
        name = self.name("a condition name")
        self.accept("WHITESPACE")
        self.expect("LPAREN", "'(' after the condition name")
        parameters: dict[str, Any] = {}
        while True:
            self.accept("WHITESPACE")
            start = self.peek()
            param = self.name("a parameter name")
            self.accept("WHITESPACE")
            self.expect("COLON", "':' after the parameter name")
            self.accept("WHITESPACE")
            param_type = self.parameter_type()
            if param in parameters:
                raise DslSyntaxError(f"parameter '{param}' is already defined in the condition '{name}'",
                                     start.line, start.column)
            parameters[param] = param_type
            self.accept("WHITESPACE")
            if self.accept("RPAREN"):
                break
            self.expect("COMMA", "',' or ')'")
        self.accept("WHITESPACE")
        self.expect("LBRACE", "'{'")
        self.accept("NEWLINE")
        self.accept("WHITESPACE")
        parts = []
        while self.peek().kind not in ("RBRACE", "EOF"):
            parts.append(self.peek().text)
            self.pos += 1
        self.expect("RBRACE", "'}' closing the condition")
        return {"name": name, "expression": "".join(parts).rstrip("\n"), "parameters": parameters}

    def parameter_type(self) -> dict[str, Any]:
        container = self.accept("CONDITION_PARAM_CONTAINER")
        if container:
            self.expect("LESS", "'<'")
            inner = self.expect("CONDITION_PARAM_TYPE", "a parameter type").text
            self.expect("GREATER", "'>'")
            return {"type_name": f"TYPE_NAME_{container.text.upper()}",
                    "generic_types": [{"type_name": f"TYPE_NAME_{inner.upper()}"}]}
        simple = self.expect("CONDITION_PARAM_TYPE", "a parameter type (bool, string, int, uint, double, "
                             "duration, timestamp, ipaddress, list<T>, map<T>)").text
        return {"type_name": f"TYPE_NAME_{simple.upper()}"}


def parse_dsl(text: str) -> dict[str, Any]:
    """The authorization-model JSON of an OpenFGA DSL model (``fga model transform`` output)."""
    if not isinstance(text, str):
        raise TypeError("parse_dsl expects the model text as a string")
    return _Parser(tokenize(clean_comments(text))).main()


# ------------------------------------------------------------------------------- JSON → DSL

def _format_ref(ref: dict[str, Any]) -> str:
    text = ref["type"] + (f"#{ref['relation']}" if ref.get("relation") else "")
    text += ":*" if "wildcard" in ref else ""
    return text + (f" with {ref['condition']}" if ref.get("condition") else "")


def _format_rewrite(rewrite: dict[str, Any], refs: list[dict[str, Any]], nested: bool) -> str:
    if "this" in rewrite:
        return "[" + ", ".join(_format_ref(r) for r in refs) + "]"
    if "computedUserset" in rewrite:
        return rewrite["computedUserset"]["relation"]
    if "tupleToUserset" in rewrite:
        ttu = rewrite["tupleToUserset"]
        return f"{ttu['computedUserset']['relation']} from {ttu['tupleset']['relation']}"
    if "difference" in rewrite:
        parts = [rewrite["difference"]["base"], rewrite["difference"]["subtract"]]
        operator = " but not "
    else:
        kind = "union" if "union" in rewrite else "intersection"
        parts = rewrite[kind]["child"]
        operator = " or " if kind == "union" else " and "
    text = operator.join(_format_rewrite(p, refs, True) for p in parts)
    return f"({text})" if nested else text


def format_dsl(model: dict[str, Any]) -> str:
    """The DSL of a JSON model (``fga model transform --output-format fga``); ``parse_dsl`` inverts it."""
    lines = ["model", f"  schema {model.get('schema_version', '1.1')}"]
    for type_def in model.get("type_definitions") or []:
        lines += ["", f"type {type_def['type']}"]
        relations = type_def.get("relations") or {}
        metadata = (type_def.get("metadata") or {}).get("relations") or {}
        if relations:
            lines.append("  relations")
        for name, rewrite in relations.items():
            refs = (metadata.get(name) or {}).get("directly_related_user_types") or []
            lines.append(f"    define {name}: {_format_rewrite(rewrite, refs, False)}")
    for name, condition in (model.get("conditions") or {}).items():
        params = []
        for param, type_ref in (condition.get("parameters") or {}).items():
            type_name = type_ref["type_name"].removeprefix("TYPE_NAME_").lower()
            generics = type_ref.get("generic_types") or []
            if generics:
                type_name += f"<{generics[0]['type_name'].removeprefix('TYPE_NAME_').lower()}>"
            params.append(f"{param}: {type_name}")
        lines += ["", f"condition {name}({', '.join(params)}) {{", f"  {condition['expression']}", "}"]
    return "\n".join(lines) + "\n"
