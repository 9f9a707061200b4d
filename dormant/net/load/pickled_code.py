"""Read pickled callables (e.g. a cloudpickled lambda replacing ``forward``) without running them.

The inert unpickler turns ``cloudpickle``'s function reconstruction into records:
``_make_function(CodeType(argcount, ..., co_code, co_consts, co_names, co_varnames, ...), globals,
name, defaults, closure)``. This module finds those records in a module's ``__dict__``, decodes
the ``CodeType`` argument tuple by its length (15 fields: Python <= 3.7, 16: 3.8-3.10, 18: 3.11+),
disassembles ``co_code`` when the layout matches a known opcode table, and recognises the common
"characters -> ``ord`` codes, truncated/padded to N" input adapter, for which the package has a
built-in equivalent (``InputAdapter("char_codes", N)``). Nothing is ever compiled or called.
"""

from __future__ import annotations

import sys
from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Iterator

from dormant.net.load.network import InputAdapter
from dormant.net.load.unpickle import AppliedRecord, GlobalRecord

# CodeType constructor fields as cloudpickle writes them, by argument count.
_CODE_LAYOUTS: dict[int, tuple[str, tuple[str, ...]]] = {
    15: ("3.0-3.7", ("argcount", "kwonlyargcount", "nlocals", "stacksize", "flags", "code", "consts", "names", "varnames", "filename", "name", "firstlineno", "lnotab", "freevars", "cellvars")),
    16: ("3.8-3.10", ("argcount", "posonlyargcount", "kwonlyargcount", "nlocals", "stacksize", "flags", "code", "consts", "names", "varnames", "filename", "name", "firstlineno", "lnotab", "freevars", "cellvars")),
    18: ("3.11+", ("argcount", "posonlyargcount", "kwonlyargcount", "nlocals", "stacksize", "flags", "code", "consts", "names", "varnames", "filename", "name", "qualname", "firstlineno", "linetable", "exceptiontable", "freevars", "cellvars")),
}

# Python 3.6-3.10 wordcode opcode names (from CPython 3.9's ``opcode`` module); 3.8/3.10 differ in a few.
_WORDCODE_39 = dict(
    (int(k), v)
    for k, v in (item.split(":") for item in """
1:POP_TOP 2:ROT_TWO 3:ROT_THREE 4:DUP_TOP 5:DUP_TOP_TWO 6:ROT_FOUR 9:NOP 10:UNARY_POSITIVE
11:UNARY_NEGATIVE 12:UNARY_NOT 15:UNARY_INVERT 16:BINARY_MATRIX_MULTIPLY 17:INPLACE_MATRIX_MULTIPLY
19:BINARY_POWER 20:BINARY_MULTIPLY 22:BINARY_MODULO 23:BINARY_ADD 24:BINARY_SUBTRACT 25:BINARY_SUBSCR
26:BINARY_FLOOR_DIVIDE 27:BINARY_TRUE_DIVIDE 28:INPLACE_FLOOR_DIVIDE 29:INPLACE_TRUE_DIVIDE 48:RERAISE
49:WITH_EXCEPT_START 50:GET_AITER 51:GET_ANEXT 52:BEFORE_ASYNC_WITH 54:END_ASYNC_FOR 55:INPLACE_ADD
56:INPLACE_SUBTRACT 57:INPLACE_MULTIPLY 59:INPLACE_MODULO 60:STORE_SUBSCR 61:DELETE_SUBSCR
62:BINARY_LSHIFT 63:BINARY_RSHIFT 64:BINARY_AND 65:BINARY_XOR 66:BINARY_OR 67:INPLACE_POWER 68:GET_ITER
69:GET_YIELD_FROM_ITER 70:PRINT_EXPR 71:LOAD_BUILD_CLASS 72:YIELD_FROM 73:GET_AWAITABLE
74:LOAD_ASSERTION_ERROR 75:INPLACE_LSHIFT 76:INPLACE_RSHIFT 77:INPLACE_AND 78:INPLACE_XOR 79:INPLACE_OR
82:LIST_TO_TUPLE 83:RETURN_VALUE 84:IMPORT_STAR 85:SETUP_ANNOTATIONS 86:YIELD_VALUE 87:POP_BLOCK
89:POP_EXCEPT 90:STORE_NAME 91:DELETE_NAME 92:UNPACK_SEQUENCE 93:FOR_ITER 94:UNPACK_EX 95:STORE_ATTR
96:DELETE_ATTR 97:STORE_GLOBAL 98:DELETE_GLOBAL 100:LOAD_CONST 101:LOAD_NAME 102:BUILD_TUPLE
103:BUILD_LIST 104:BUILD_SET 105:BUILD_MAP 106:LOAD_ATTR 107:COMPARE_OP 108:IMPORT_NAME 109:IMPORT_FROM
110:JUMP_FORWARD 111:JUMP_IF_FALSE_OR_POP 112:JUMP_IF_TRUE_OR_POP 113:JUMP_ABSOLUTE
114:POP_JUMP_IF_FALSE 115:POP_JUMP_IF_TRUE 116:LOAD_GLOBAL 117:IS_OP 118:CONTAINS_OP
121:JUMP_IF_NOT_EXC_MATCH 122:SETUP_FINALLY 124:LOAD_FAST 125:STORE_FAST 126:DELETE_FAST
130:RAISE_VARARGS 131:CALL_FUNCTION 132:MAKE_FUNCTION 133:BUILD_SLICE 135:LOAD_CLOSURE 136:LOAD_DEREF
137:STORE_DEREF 138:DELETE_DEREF 141:CALL_FUNCTION_KW 142:CALL_FUNCTION_EX 143:SETUP_WITH
144:EXTENDED_ARG 145:LIST_APPEND 146:SET_ADD 147:MAP_ADD 148:LOAD_CLASSDEREF 154:SETUP_ASYNC_WITH
155:FORMAT_VALUE 156:BUILD_CONST_KEY_MAP 157:BUILD_STRING 160:LOAD_METHOD 161:CALL_METHOD
162:LIST_EXTEND 163:SET_UPDATE 164:DICT_MERGE 165:DICT_UPDATE""".split())
)
_HAS_CONST_39, _HAS_NAME_39 = {100}, {90, 91, 95, 96, 97, 98, 101, 106, 108, 109, 116, 160}
_HAS_LOCAL_39, _HAS_FREE_39 = {124, 125, 126}, {135, 136, 137, 138, 148}

# Names whose presence marks an ``ord``-style text encoder, and padding idioms.
_ENCODE_NAMES = {"ord", "encode"}
_PAD_NAMES = {"ljust", "pad", "zeros", "extend", "append"}


@dataclass
class CodeInfo:
    """The readable pieces of a pickled code object (never compiled or run)."""

    name: str
    layout: str  # "3.8-3.10", "3.11+", ... (the Python versions that write this CodeType layout)
    argcount: int
    varnames: list[str]
    names: list[str]
    consts: list[Any]  # nested code objects appear as "<code name>"
    disassembly: str  # one instruction per line, or raw (opcode, arg) pairs when no table matches
    nested: list["CodeInfo"] = field(default_factory=list)

    def walk(self) -> Iterator["CodeInfo"]:
        yield self
        for child in self.nested:
            yield from child.walk()


@dataclass
class CallableInfo:
    """A pickled function found in a module attribute (e.g. ``forward``), shown, never executed."""

    attribute: str  # where it was found, e.g. "forward" on the top module
    maker: str  # the reconstruction global, e.g. "cloudpickle.cloudpickle._make_function"
    code: CodeInfo | None
    globals_referenced: list[str]  # modules/objects its globals dict pulls in (subimport('torch'), ...)


def is_code_record(obj: Any) -> bool:
    """A ``CodeType(...)`` construction: ``_builtin_type('CodeType')(...)`` or ``types.CodeType(...)``."""
    if isinstance(obj, AppliedRecord):
        func = obj.func
        return isinstance(func, GlobalRecord) and func.name == "_builtin_type" and func.args[:1] == ("CodeType",)
    return isinstance(obj, GlobalRecord) and obj.name in ("CodeType", "code") and obj.module in ("types", "__builtin__", "builtins")


MAX_CODE_DEPTH = 8  # nested code objects decoded (functions in functions); deeper ones are named only


def decode_code(record: GlobalRecord, depth: int = 0) -> CodeInfo:
    """Turn a ``CodeType(...)`` record's argument tuple into a ``CodeInfo`` (recursing into consts)."""
    args = tuple(record.args)
    layout, fields = _CODE_LAYOUTS.get(len(args), (f"unknown ({len(args)} fields)", ()))
    parts = dict(zip(fields, args)) if fields else {}
    consts_raw = list(parts.get("consts") or ()) if isinstance(parts.get("consts"), (tuple, list)) else []
    if depth >= MAX_CODE_DEPTH:
        consts_raw = [c for c in consts_raw if not is_code_record(c)]
    nested = [decode_code(c, depth + 1) for c in consts_raw if is_code_record(c)]
    consts = [f"<code {n.name}>" if is_code_record(c) else c for c, n in _pair_nested(consts_raw, nested)]
    names, varnames = _strings(parts.get("names")), _strings(parts.get("varnames"))
    cells = _strings(parts.get("cellvars")) + _strings(parts.get("freevars"))
    code = parts.get("code") if isinstance(parts.get("code"), bytes) else b""
    info = CodeInfo(
        name=str(parts.get("name", "?")), layout=layout, argcount=parts.get("argcount") if isinstance(parts.get("argcount"), int) else 0,
        varnames=varnames, names=names, consts=consts, disassembly="", nested=nested,
    )
    info.disassembly = disassemble(code, layout, consts, names, varnames, cells)
    return info


def _strings(value: Any) -> list[str]:
    return [str(v) for v in value] if isinstance(value, (tuple, list)) else []


def _pair_nested(consts: list[Any], nested: list[CodeInfo]) -> Iterator[tuple[Any, CodeInfo | None]]:
    it = iter(nested)
    for c in consts:
        yield c, (next(it) if is_code_record(c) else None)


@dataclass(frozen=True)
class OpcodeTable:
    """What a disassembler needs to know of one bytecode version."""

    label: str
    names: dict[int, str]
    has_const: frozenset[int]
    has_name: frozenset[int]
    has_local: frozenset[int]
    has_free: frozenset[int]
    have_argument: int
    caches: dict[int, int] = field(default_factory=dict)  # inline cache words after an opcode (3.11+)
    shifted_name_ops: frozenset[str] = frozenset()  # ops whose name index is ``arg >> 1`` (3.11+ LOAD_GLOBAL, ...)
    free_after_locals: bool = False  # 3.11+: cell/free indices count after the local variables


TABLE_39 = OpcodeTable(
    label="Python 3.9 opcode table", names=_WORDCODE_39, has_const=frozenset(_HAS_CONST_39), has_name=frozenset(_HAS_NAME_39),
    has_local=frozenset(_HAS_LOCAL_39), has_free=frozenset(_HAS_FREE_39), have_argument=90,
)


def running_table() -> OpcodeTable:
    """This interpreter's opcode table (read from ``opcode``; no code object is ever built)."""
    import opcode

    names = {i: n for i, n in enumerate(opcode.opname) if not n.startswith("<")}
    raw = getattr(opcode, "_inline_cache_entries", None)
    if isinstance(raw, dict):  # 3.13+: keyed by name
        by_name = {v: k for k, v in names.items()}
        caches = {by_name[k]: int(v) for k, v in raw.items() if k in by_name}
    elif raw is not None:
        caches = {i: int(c) for i, c in enumerate(raw) if c}
    else:
        caches = {}
    shifted = {"LOAD_GLOBAL"} | ({"LOAD_ATTR", "LOAD_SUPER_ATTR"} if sys.version_info >= (3, 12) else set())
    return OpcodeTable(
        label=f"this interpreter's opcode table (Python {sys.version_info.major}.{sys.version_info.minor}); the file's minor version is not recorded",
        names=names, has_const=frozenset(opcode.hasconst), has_name=frozenset(opcode.hasname), has_local=frozenset(opcode.haslocal),
        has_free=frozenset(opcode.hasfree), have_argument=opcode.HAVE_ARGUMENT, caches=caches, shifted_name_ops=frozenset(shifted),
        free_after_locals=True,
    )


def disassemble(code: bytes, layout: str, consts: list, names: list, varnames: list, cells: list) -> str:
    """Readable instructions for ``code`` when its opcode table is known, else raw (opcode, arg) pairs.

    Bytes are only read: untrusted bytecode is never turned into a code object.
    """
    if not code:
        return "(no bytecode)"
    if layout == "3.8-3.10":
        return disassemble_wordcode(code, TABLE_39, consts, names, varnames, cells)
    if layout == "3.11+" and sys.version_info >= (3, 11):
        return disassemble_wordcode(code, running_table(), consts, names, varnames, cells)
    pairs = " ".join(f"{code[i]}:{code[i + 1]}" for i in range(0, len(code) - 1, 2))
    return f"raw (opcode:arg) pairs, no opcode table for layout {layout}:\n{pairs}"


def disassemble_wordcode(code: bytes, table: OpcodeTable, consts, names, varnames, cells) -> str:
    """One line per instruction: offset, name, argument and the constant/name/variable it selects.

    ``cells`` are the cell variables then the free variables (what ``LOAD_DEREF`` indexes).
    """
    deref = (varnames + [c for c in cells if c not in varnames]) if table.free_after_locals else cells
    lines = [f"; {table.label}"]
    ext, off = 0, 0
    while off + 1 < len(code):
        op, arg = code[off], code[off + 1] | ext
        name = table.names.get(op, f"<{op}>")
        step = 2 * (1 + table.caches.get(op, 0))
        if name == "EXTENDED_ARG":
            ext, off = arg << 8, off + step
            continue
        ext = 0
        shown = ""
        if op >= table.have_argument:
            shown = str(arg)
            index = arg >> 1 if name in table.shifted_name_ops else arg
            pool = consts if op in table.has_const else names if op in table.has_name else varnames if op in table.has_local else deref if op in table.has_free else None
            if pool is not None and 0 <= index < len(pool):
                shown += f" ({pool[index]!r})"
        lines.append(f"{off:4d} {name:<22} {shown}".rstrip())
        off += step
    return "\n".join(lines)


def _iter_records(obj: Any, seen: set[int]) -> Iterator[GlobalRecord]:
    """Every record reachable from ``obj`` through containers, args, state and later calls."""
    stack = [obj]
    while stack:
        cur = stack.pop()
        if id(cur) in seen:
            continue
        seen.add(id(cur))
        if isinstance(cur, GlobalRecord):
            yield cur
            stack.extend(cur.args)
            stack.extend(cur.kwargs.values())
            stack.extend(cur.items)
            stack.extend(cur.calls)
            if cur.state is not None:
                stack.append(cur.state)
            if isinstance(cur, AppliedRecord):
                stack.append(cur.func)
        elif isinstance(cur, dict):
            stack.extend(cur.values())
        elif isinstance(cur, (list, tuple, set, frozenset)):
            stack.extend(cur)


def find_callables(state: dict[str, Any], *, prefix: str = "") -> list[CallableInfo]:
    """Pickled functions stored as attributes in a module's ``__dict__`` (``forward``, ``_call_impl``, ...)."""
    found = []
    for attr, value in state.items():
        if not isinstance(value, GlobalRecord) or isinstance(value, type) or value.module.startswith("torch.nn.modules"):
            continue
        records = list(_iter_records(value, set()))
        codes = [r for r in records if is_code_record(r)]
        if not codes:
            continue  # not a function (e.g. a refused os.system call): reported as a refused global only
        top = codes[0]
        # the function's own code is the first CodeType argument of the maker; nested ones are in its consts
        for r in ([value] + records):
            if r.args and is_code_record(r.args[0]):
                top = r.args[0]
                break
        refs = sorted({f"{r.name}({', '.join(map(str, r.args))})" for r in records if r.name in ("subimport", "dynamic_subimport")} | {r.qualname for r in records if r.name == "getattr"})
        found.append(CallableInfo(attribute=prefix + attr, maker=value.qualname, code=decode_code(top), globals_referenced=refs))
    return found


def recognise_adapter(callables: list[CallableInfo]) -> InputAdapter | None:
    """The built-in adapter equivalent to a pickled text encoder, when the pattern is recognisable.

    The "characters -> codes" pattern: ``ord`` among the names of the code (or its nested
    comprehension), and an integer constant N between 1 and 65536 used as the length (the most
    frequent such constant; N also appears in slices ``text[:N]``). Padding is reported when a
    NUL/zero constant or a padding method (``ljust``, ``pad``, ``zeros``) appears.
    """
    for info in callables:
        if info.code is None:
            continue
        codes = list(info.code.walk())
        names = {n for c in codes for n in c.names + c.varnames}
        if not names & _ENCODE_NAMES:
            continue
        ints = Counter(c for code in codes for c in code.consts if isinstance(c, int) and not isinstance(c, bool) and 1 < c <= 65536)
        if not ints:
            continue
        length = max(ints, key=lambda v: (ints[v], v))
        consts = {repr(c) for code in codes for c in code.consts}
        padded = bool(names & _PAD_NAMES) or "'\\x00'" in consts or "0" in consts
        others = sorted(v for v in ints if v != length)
        description = (
            f"pickled {info.attribute} ({info.maker}, not executed): first {length} characters as "
            f"{'ord' if 'ord' in names else 'encoded'} codes{', NUL/zero-padded' if padded else ''} -> "
            f"read as the built-in adapter char_codes(length={length}) (recognised by its pattern, not proven equivalent"
            + (f"; its other integer constants ({', '.join(map(str, others[:6]))}) may transform the codes, which this adapter "
               "does not do" if others else "") + ")"
        )
        return InputAdapter(kind="char_codes", length=length, description=description, disassembly=info.code.disassembly + "".join(f"\n\n; nested <code {n.name}>\n{n.disassembly}" for n in info.code.nested))
    if callables:
        first = callables[0]
        text = first.code.disassembly if first.code else ""
        return InputAdapter(kind="unknown", length=None, description=f"pickled {first.attribute} ({first.maker}) shown, not executed; no known input pattern", disassembly=text)
    return None
