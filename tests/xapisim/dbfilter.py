"""XAPI's ``get_all_records_where`` expression language (``ocaml/database/db_filter*``).

    expr  := expr "or" expr | expr "and" expr | "not" expr | "(" expr ")" | "true" | "false"
           | value "=" value | value "<>" value
    value := 'field' STRING | STRING

Fields are named by their database column, where a namespace is joined with ``__``
(``name__label``); values compare as the database stores them (``"true"``, refs, decimal ints).
"""

import re

from .errors import XapiError

# The datamodel's field namespaces; their fields are stored as <namespace>__<rest>.
NAMESPACES = ("name", "memory", "VCPUs", "actions", "PV", "HVM")
TOKEN = re.compile(r'\s*(?:(\()|(\))|(<>)|(=)|"((?:[^"\\]|\\.)*)"|([A-Za-z_]+))')


def column_name(field):
    for ns in NAMESPACES:
        if field.startswith(ns + "_"):
            return ns + "__" + field[len(ns) + 1:]
    return field


def db_text(value):
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (list, tuple)):
        return "(" + " ".join("'%s'" % v for v in value) + ")"
    if isinstance(value, dict):
        return "(" + " ".join("('%s' '%s')" % kv for kv in value.items()) + ")"
    return str(value)


def tokenize(text):
    pos, out = 0, []
    text = text.rstrip()
    while pos < len(text):
        m = TOKEN.match(text, pos)
        if not m:
            raise XapiError("INTERNAL_ERROR", "Db_filter.Expression_error(%s)" % text)
        pos = m.end()
        lparen, rparen, ne, eq, string, word = m.groups()
        if string is not None:
            out.append(("str", re.sub(r"\\(.)", r"\1", string)))
        elif word is not None:
            out.append(("word", word.lower()))
        else:
            out.append(("op", lparen or rparen or ne or eq))
    return out


class Parser:
    def __init__(self, text):
        self.text = text
        self.tokens = tokenize(text)
        self.pos = 0

    def fail(self):
        raise XapiError("INTERNAL_ERROR", "Db_filter.Expression_error(%s)" % self.text)

    def peek(self):
        return self.tokens[self.pos] if self.pos < len(self.tokens) else (None, None)

    def take(self):
        tok = self.peek()
        self.pos += 1
        return tok

    def parse(self):
        if not self.tokens:
            return lambda row: True
        expr = self.parse_or()
        if self.pos != len(self.tokens):
            self.fail()
        return expr

    def parse_or(self):
        left = self.parse_and()
        while self.peek() == ("word", "or"):
            self.take()
            right = self.parse_and()
            left = (lambda a, b: lambda row: a(row) or b(row))(left, right)
        return left

    def parse_and(self):
        left = self.parse_not()
        while self.peek() == ("word", "and"):
            self.take()
            right = self.parse_not()
            left = (lambda a, b: lambda row: a(row) and b(row))(left, right)
        return left

    def parse_not(self):
        if self.peek() == ("word", "not"):
            self.take()
            inner = self.parse_not()
            return lambda row: not inner(row)
        return self.parse_atom()

    def parse_atom(self):
        tok = self.peek()
        if tok == ("op", "("):
            self.take()
            inner = self.parse_or()
            if self.take() != ("op", ")"):
                self.fail()
            return inner
        if tok == ("word", "true"):
            self.take()
            return lambda row: True
        if tok == ("word", "false"):
            self.take()
            return lambda row: False
        left = self.parse_value()
        op = self.take()
        if op not in (("op", "="), ("op", "<>")):
            self.fail()
        right = self.parse_value()
        if op[1] == "=":
            return lambda row: left(row) == right(row)
        return lambda row: left(row) != right(row)

    def parse_value(self):
        kind, text = self.take()
        if kind == "word" and text == "field":
            kind, name = self.take()
            if kind != "str":
                self.fail()
            return lambda row: row.column(name)
        if kind == "str":
            return lambda row: text
        self.fail()


class Row:
    """A record seen through its database column names."""

    def __init__(self, record):
        self.columns = {column_name(k): v for k, v in record.items()}

    def column(self, name):
        if name not in self.columns:
            raise XapiError("INTERNAL_ERROR", "Db_exn.DBCache_NotFound(\"missing field\", \"%s\")" % name)
        return db_text(self.columns[name])


def compile_filter(text):
    predicate = Parser(text).parse()
    return lambda record: predicate(Row(record))
