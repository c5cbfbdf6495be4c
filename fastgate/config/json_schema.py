"""The JSON Schema of the config file, for editors (taplo, VS Code's Even Better TOML) to complete,
document and check gate.conf; ``fastgate --print-schema`` writes it.

It is made from msgspec's own view of the schema Structs (``msgspec.inspect``),
the one ``msgspec.json.schema`` reads, walked here rather than through that
function for what it cannot do: it cannot write the defaults of the readable
units (``Duration``, ``Size``: float and int subclasses msgspec does not
encode), and it leaves out the field docstrings, which are the config's
documentation (schema.py). Each field gets its docstring as ``description``
and its default; each table refuses unknown keys (``additionalProperties``),
as the loader does; a duration or size is a number (seconds, bytes) or text
matching the loader's own pattern. Checks the loader makes after decoding
(an upstream a route names exists, a regex compiles...) are not in it.
"""

import ast
import inspect
import textwrap
from functools import cache

import msgspec
import msgspec.inspect as mi

from fastgate.config.schema import Config
from fastgate.config.units import DURATION_PATTERN, SIZE_PATTERN, Duration, Size

DIALECT = "http://json-schema.org/draft-07/schema#"
"""Draft 7: the newest draft taplo (and so Even Better TOML) checks fully."""

_UNITS = {
    Duration: {"description": 'A duration: "250ms", "5s", "2m", "1h", or a number of seconds.',
               "anyOf": [{"type": "string", "pattern": DURATION_PATTERN}, {"type": "number", "minimum": 0}]},
    Size: {"description": 'A size: "512", "16KiB", "1MiB", "1GiB" (KB, MB, GB: powers of 1000), or a number of bytes.',
           "anyOf": [{"type": "string", "pattern": SIZE_PATTERN}, {"type": "integer", "minimum": 0}]},
}


def config_schema() -> dict:
    """The schema of a whole config file (the ``Config`` Struct), its tables in ``$defs``."""
    walk = _Walk()
    walk.struct(mi.type_info(Config))
    definitions = walk.definitions
    root = definitions.pop(Config.__name__)
    return {"$schema": DIALECT, "title": "fastgate config (gate.conf)", **root, "$defs": definitions}


class _Walk:
    """One walk over the Structs: every table is defined once, under its class name."""

    def __init__(self) -> None:
        self.definitions: dict[str, dict] = {}
        self.classes: dict[str, type] = {}

    def struct(self, info: mi.StructType) -> dict:
        """Define the table ``info`` if it is new; what refers to it."""
        cls = info.cls
        name = cls.__name__
        if name not in self.classes:
            self.classes[name] = cls
            definition = self.definitions[name] = {"type": "object"}
            if cls.__doc__:
                definition["description"] = inspect.cleandoc(cls.__doc__)
            docs = field_docs(cls)
            definition["properties"] = {f.encode_name: self.field(f, docs.get(f.name)) for f in info.fields}
            required = [f.encode_name for f in info.fields if f.required]
            if required:
                definition["required"] = required
            definition["additionalProperties"] = not info.forbid_unknown_fields
        elif self.classes[name] is not cls:
            raise TypeError(f"two config tables are named {name}: {self.classes[name]} and {cls}")
        return {"$ref": f"#/$defs/{name}"}

    def field(self, field: mi.Field, doc: str | None) -> dict:
        schema = dict(self.type(field.type))
        if doc:
            schema["description"] = doc
        default = field.default
        if default is msgspec.NODEFAULT and field.default_factory is not msgspec.NODEFAULT:
            default = field.default_factory()
        if isinstance(default, (Duration, Size)):
            default = float(default) if isinstance(default, Duration) else int(default)
        if default is not msgspec.NODEFAULT and default is not None and not isinstance(default, msgspec.Struct):
            schema["default"] = msgspec.to_builtins(default)
        return schema

    def type(self, t: mi.Type) -> dict:
        if isinstance(t, mi.StructType):
            return self.struct(t)
        if isinstance(t, mi.UnionType):
            # TOML has no null: an optional table or value is one that is left out.
            choices = [self.type(member) for member in t.types if not isinstance(member, mi.NoneType)]
            return choices[0] if len(choices) == 1 else {"anyOf": choices}
        if isinstance(t, mi.ListType):
            return {"type": "array", "items": self.type(t.item_type)}
        if isinstance(t, mi.DictType):
            return {"type": "object", "additionalProperties": self.type(t.value_type)}
        if isinstance(t, mi.LiteralType):
            return {"enum": list(t.values)}
        if isinstance(t, mi.CustomType) and t.cls in _UNITS:
            return _UNITS[t.cls]
        if isinstance(t, mi.StrType) and t.pattern is None and t.min_length is None and t.max_length is None:
            return {"type": "string"}
        if isinstance(t, mi.IntType) and t.ge is None and t.gt is None and t.le is None and t.lt is None:
            return {"type": "integer"}
        if isinstance(t, mi.FloatType) and t.ge is None and t.gt is None and t.le is None and t.lt is None:
            return {"type": "number"}
        if isinstance(t, mi.BoolType):
            return {"type": "boolean"}
        raise TypeError(f"no JSON Schema for the config type {t!r} (config/json_schema.py)")


@cache
def field_docs(cls: type) -> dict[str, str]:
    """The docstrings under the fields of a class (a string literal right after ``name: type``)."""
    body = ast.parse(textwrap.dedent(inspect.getsource(cls))).body[0].body
    docs = {}
    for node, after in zip(body, body[1:]):
        if (isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name) and isinstance(after, ast.Expr)
                and isinstance(after.value, ast.Constant) and isinstance(after.value.value, str)):
            docs[node.target.id] = inspect.cleandoc(after.value.value)
    return docs
