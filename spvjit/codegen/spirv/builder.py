"""ModuleBuilder: assembles a binary SPIR-V module section by section.

Instructions are encoded to words as soon as they are added, into one list per
logical section of the spec (section 2.4); ``assemble()`` concatenates the lists
in the required order.  So callers may add a capability, a type or a decoration
at any moment, even in the middle of a function body.  Types and constants are
deduplicated (SPIR-V forbids two identical non-aggregate type declarations);
struct types are not, because each struct carries its own decorations.
"""

from __future__ import annotations

import struct
from contextlib import contextmanager
from dataclasses import dataclass, field

from . import grammar as g
from .encode import TERMINATORS, encode_operands, enum_value, instruction, opcode_info, scalar_words

SUPPORTED_VERSIONS = [(1, v) for v in range(7)]
GENERATOR = 0  # no registered generator id: tools print "Khronos; 0"

# Only Function-scope bodies may hold these; the builder places them itself.
_BUILDER_ONLY = {
    "OpLabel": "label()", "OpFunction": "begin_function()", "OpFunctionEnd": "end_function()",
    "OpFunctionParameter": "function_parameter()", "OpVariable": "local_variable() or variable()",
}


@dataclass
class _Block:
    label: int
    code: list[list[int]] = field(default_factory=list)
    terminator: str | None = None


@dataclass
class _Function:
    id: int
    head: list[list[int]]  # OpFunction and its OpFunctionParameters
    locals: list[list[int]] = field(default_factory=list)  # OpVariable Function, go first in block 0
    blocks: list[_Block] = field(default_factory=list)


class ModuleBuilder:
    def __init__(self, version: tuple[int, int] = (1, 3)):
        if tuple(version) not in SUPPORTED_VERSIONS:
            raise ValueError(f"unsupported SPIR-V version {version}; use (1, 0) .. (1, 6)")
        self.version = tuple(version)
        self._bound = 1
        self._capabilities: dict[int, str] = {}  # by value, so aliases do not repeat
        self._extensions: dict[str, None] = {}
        self._ext_imports: dict[str, int] = {}
        self._memory_model = ("Logical", "GLSL450")
        self._entry_points: list[tuple[str, int, str, list[int] | None]] = []
        self._exec_modes: list[list[int]] = []
        self._debug_source: list[list[int]] = []  # OpString, OpSource
        self._debug_names: list[list[int]] = []  # OpName, OpMemberName
        # Annotations, deduplicated: deduplicated types (arrays, above all) get decorated by
        # every user, and spirv-val rejects e.g. the same ArrayStride twice.
        self._annotations: dict[tuple[int, ...], None] = {}
        self._globals: list[list[int]] = []  # types, constants, global variables in creation order
        self._functions: list[list[int]] = []
        self._cache: dict[tuple, int] = {}  # deduplicated types and constants
        self._types: dict[int, tuple] = {}  # type id -> description, see type_info()
        self._global_vars: list[tuple[int, int]] = []  # (id, StorageClass value)
        self._spec: set[int] = set()  # spec constant ids (composites of them are spec too)
        self._fn: _Function | None = None

    # -- ids, enums, encoding ------------------------------------------------------
    def new_id(self) -> int:
        self._bound += 1
        return self._bound - 1

    @property
    def bound(self) -> int:
        """The id bound written in the header: one more than the largest id."""
        return self._bound

    def enum(self, kind: str, name: str) -> int:
        """Value of an enumerant, e.g. enum("Scope", "Subgroup") == 3; masks take "A|B"."""
        return enum_value(kind, name)

    def type_info(self, type_id: int) -> tuple:
        """What a type id was built from, e.g. ("int", 32, True), ("pointer", sc_value, pointee)."""
        try:
            return self._types[type_id]
        except KeyError:
            raise ValueError(f"%{type_id} is not a type made by this builder") from None

    def _enum_id(self, kind: str, value: int) -> int:
        # IdScope / IdMemorySemantics operands given by name become uint32 constants.
        return self.const(self.type_int(32, False), value)

    def _inst(self, opname: str, result_type: int | None, result_id: int | None, operands) -> list[int]:
        opcode, has_type, has_id = opcode_info(opname)
        if has_type != (result_type is not None):
            need = "needs a result type" if has_type else "has no result type; pass None"
            raise ValueError(f"{opname} {need}")
        head = ([result_type] if has_type else []) + ([result_id] if has_id else [])
        return instruction(opcode, head + encode_operands(opname, operands, self._enum_id))

    def _global(self, opname: str, result_type: int | None, *operands) -> int:
        rid = self.new_id()
        self._globals.append(self._inst(opname, result_type, rid, operands))
        return rid

    # -- module-level declarations ---------------------------------------------------
    def capability(self, name: str) -> None:
        self._capabilities.setdefault(enum_value("Capability", name), name)

    def extension(self, name: str) -> None:
        self._extensions.setdefault(name, None)

    def ext_inst_import(self, name: str) -> int:
        if name not in self._ext_imports:
            self._ext_imports[name] = self.new_id()
        return self._ext_imports[name]

    def memory_model(self, addressing: str, memory: str) -> None:
        enum_value("AddressingModel", addressing)  # check the names now, not at assemble()
        enum_value("MemoryModel", memory)
        self._memory_model = (addressing, memory)

    def set_addressing_model(self, addressing: str) -> None:
        """Change only the addressing model (e.g. to PhysicalStorageBuffer64), keeping the memory model."""
        self.memory_model(addressing, self._memory_model[1])

    def entry_point(self, model: str, fn_id: int, name: str, interface: list[int] | None = None) -> None:
        """Declare an entry point; interface None lists the global variables at assemble()
        time: all of them for SPIR-V >= 1.4, only Input/Output ones before (spec 2.4 / OpEntryPoint)."""
        enum_value("ExecutionModel", model)
        self._entry_points.append((model, fn_id, name, None if interface is None else list(interface)))

    def execution_mode(self, fn_id: int, mode: str, *literals) -> None:
        self._exec_modes.append(self._inst("OpExecutionMode", None, None, (fn_id, mode, *literals)))

    def execution_mode_id(self, fn_id: int, mode: str, *ids) -> None:
        self._exec_modes.append(self._inst("OpExecutionModeId", None, None, (fn_id, mode, *ids)))

    # -- debug and annotations ---------------------------------------------------------
    def string(self, text: str) -> int:
        rid = self.new_id()
        self._debug_source.append(self._inst("OpString", None, rid, (text,)))
        return rid

    def source(self, language: str = "Unknown", version: int = 0, file_id: int | None = None) -> None:
        self._debug_source.append(self._inst("OpSource", None, None,
                                             (language, version, *([file_id] if file_id else []))))

    def name(self, target: int, text: str) -> None:
        self._debug_names.append(self._inst("OpName", None, None, (target, text)))

    def member_name(self, struct_id: int, index: int, text: str) -> None:
        self._debug_names.append(self._inst("OpMemberName", None, None, (struct_id, index, text)))

    def _annotate(self, opname: str, *operands) -> None:
        self._annotations.setdefault(tuple(self._inst(opname, None, None, operands)), None)

    def decorate(self, target: int, decoration: str, *literals) -> None:
        self._annotate("OpDecorate", target, decoration, *literals)

    def decorate_id(self, target: int, decoration: str, *ids) -> None:
        self._annotate("OpDecorateId", target, decoration, *ids)

    def member_decorate(self, struct_id: int, index: int, decoration: str, *literals) -> None:
        self._annotate("OpMemberDecorate", struct_id, index, decoration, *literals)

    # -- types ------------------------------------------------------------------------
    def _type(self, info: tuple, opname: str, *operands) -> int:
        key = ("type", *info)
        if key not in self._cache:
            tid = self._global(opname, None, *operands)
            self._cache[key] = tid
            self._types[tid] = info
        return self._cache[key]

    def type_void(self) -> int:
        return self._type(("void",), "OpTypeVoid")

    def type_bool(self) -> int:
        return self._type(("bool",), "OpTypeBool")

    def type_int(self, width: int, signed: bool) -> int:
        if width not in (8, 16, 32, 64):
            raise ValueError(f"unsupported int width {width}")
        return self._type(("int", width, bool(signed)), "OpTypeInt", width, int(bool(signed)))

    def type_float(self, width: int, encoding: str | None = None) -> int:
        """IEEE float of 16/32/64 bits; encoding="BFloat16KHR" (16 bits) needs SPV_KHR_bfloat16."""
        if width not in (16, 32, 64):
            raise ValueError(f"unsupported float width {width}")
        return self._type(("float", width, encoding), "OpTypeFloat", width, *([encoding] if encoding else []))

    def type_vector(self, elem: int, n: int) -> int:
        return self._type(("vector", elem, n), "OpTypeVector", elem, n)

    def type_array(self, elem: int, length: int, stride: int | None = None) -> int:
        """Array of ``length`` (a uint32 constant is made for it).  Arrays are aggregates, so
        SPIR-V allows twins: each ``stride`` (ArrayStride decoration) gets its own type."""
        n = self.const(self.type_int(32, False), length)
        return self._strided(self._type(("array", elem, length, stride), "OpTypeArray", elem, n), stride)

    def type_runtime_array(self, elem: int, stride: int | None = None) -> int:
        return self._strided(self._type(("runtime_array", elem, stride), "OpTypeRuntimeArray", elem), stride)

    def _strided(self, tid: int, stride: int | None) -> int:
        if stride is not None:
            self.decorate(tid, "ArrayStride", stride)  # deduplicated with the annotations
        return tid

    def type_pointer(self, storage_class: str, pointee: int) -> int:
        sc = enum_value("StorageClass", storage_class)
        return self._type(("pointer", sc, pointee), "OpTypePointer", sc, pointee)

    def type_function(self, ret: int, params: list[int]) -> int:
        return self._type(("function", ret, tuple(params)), "OpTypeFunction", ret, *params)

    def type_image(self, sampled_type: int, dim: str, depth: int = 0, arrayed: int = 0, ms: int = 0,
                   sampled: int = 1, fmt: str = "Unknown") -> int:
        info = ("image", sampled_type, enum_value("Dim", dim), depth, arrayed, ms, sampled,
                enum_value("ImageFormat", fmt))
        return self._type(info, "OpTypeImage", *info[1:])

    def type_sampled_image(self, image: int) -> int:
        return self._type(("sampled_image", image), "OpTypeSampledImage", image)

    def type_cooperative_matrix_khr(self, component: int, scope: str, rows: int, cols: int, use: str) -> int:
        """use: a CooperativeMatrixUse name, "MatrixAKHR" (or "MatrixA"), "MatrixBKHR", "MatrixAccumulatorKHR"."""
        if use not in g.ENUMS["CooperativeMatrixUse"] and use + "KHR" in g.ENUMS["CooperativeMatrixUse"]:
            use += "KHR"
        u32 = self.type_int(32, False)
        sc, u = enum_value("Scope", scope), enum_value("CooperativeMatrixUse", use)
        ids = [self.const(u32, x) for x in (sc, rows, cols, u)]
        return self._type(("coopmat_khr", component, sc, rows, cols, u), "OpTypeCooperativeMatrixKHR",
                          component, *ids)

    def type_struct(self, members: list[int], name: str | None = None) -> int:
        tid = self._global("OpTypeStruct", None, *members)
        self._types[tid] = ("struct", tuple(members))
        if name is not None:
            self.name(tid, name)
        return tid

    # -- constants ----------------------------------------------------------------------
    def const(self, type_id: int, value: bool | int | float) -> int:
        """A constant of a bool/int/float type; for a vector type, a splat of ``value``."""
        info = self.type_info(type_id)
        if info[0] == "vector":
            return self.const_composite(type_id, [self.const(info[1], value)] * info[2])
        if info[0] == "bool":
            key = ("const", type_id, bool(value))
            op, words = ("OpConstantTrue" if value else "OpConstantFalse"), []
        elif info[0] in ("int", "float"):
            words = scalar_words(info, value)
            key, op = ("const", type_id, tuple(words)), "OpConstant"
        else:
            raise ValueError(f"const(): %{type_id} is a {info[0]} type; use const_composite/const_null")
        if key not in self._cache:
            self._cache[key] = self._global(op, type_id, *words)
        return self._cache[key]

    def const_composite(self, type_id: int, ids: list[int]) -> int:
        if any(i in self._spec for i in ids):  # then it is a specialization constant itself
            rid = self._global("OpSpecConstantComposite", type_id, *ids)
            self._spec.add(rid)
            return rid
        key = ("composite", type_id, tuple(ids))
        if key not in self._cache:
            self._cache[key] = self._global("OpConstantComposite", type_id, *ids)
        return self._cache[key]

    def const_null(self, type_id: int) -> int:
        key = ("null", type_id)
        if key not in self._cache:
            self._cache[key] = self._global("OpConstantNull", type_id)
        return self._cache[key]

    def spec_const(self, type_id: int, default: bool | int | float, spec_id: int) -> int:
        info = self.type_info(type_id)
        if info[0] == "bool":
            rid = self._global("OpSpecConstantTrue" if default else "OpSpecConstantFalse", type_id)
        else:
            rid = self._global("OpSpecConstant", type_id, *scalar_words(info, default))
        self.decorate(rid, "SpecId", spec_id)
        self._spec.add(rid)
        return rid

    def spec_const_op(self, type_id: int, opname: str, *operands) -> int:
        rid = self._global("OpSpecConstantOp", type_id, opname, *operands)
        self._spec.add(rid)
        return rid

    # -- variables ----------------------------------------------------------------------
    def _check_pointer(self, ptr_type: int, storage_class: str) -> int:
        info, sc = self.type_info(ptr_type), enum_value("StorageClass", storage_class)
        if info[0] != "pointer" or info[1] != sc:
            raise ValueError(f"%{ptr_type} is not a {storage_class} pointer type: {info}")
        return sc

    def variable(self, ptr_type: int, storage_class: str, initializer: int | None = None) -> int:
        if storage_class == "Function":
            raise ValueError("variable(): Function storage belongs in local_variable()")
        sc = self._check_pointer(ptr_type, storage_class)
        init = [] if initializer is None else [initializer]
        rid = self._global("OpVariable", ptr_type, sc, *init)
        self._global_vars.append((rid, sc))
        return rid

    def local_variable(self, ptr_type: int, initializer: int | None = None) -> int:
        """OpVariable Function; always placed at the start of the first block (spec 2.4)."""
        fn = self._function("local_variable")
        sc = self._check_pointer(ptr_type, "Function")
        rid = self.new_id()
        init = [] if initializer is None else [initializer]
        fn.locals.append(self._inst("OpVariable", ptr_type, rid, (sc, *init)))
        return rid

    # -- functions and blocks -----------------------------------------------------------
    def _function(self, what: str) -> _Function:
        if self._fn is None:
            raise ValueError(f"{what}: no function is open; call begin_function() first")
        return self._fn

    def begin_function(self, ret_type: int, fn_type: int, control: str = "None") -> int:
        if self._fn is not None:
            raise ValueError(f"begin_function(): function %{self._fn.id} is still open")
        fid = self.new_id()
        self._fn = _Function(fid, [self._inst("OpFunction", ret_type, fid, (control, fn_type))])
        return fid

    @contextmanager
    def side_function(self):
        """Build another function while one is open (a callee the open function refers to, such
        as a cooperative-matrix combine function): the open function is set aside, the body of
        the `with` begins and ends the other one, and the open function resumes."""
        saved, self._fn = self._fn, None
        try:
            yield
            if self._fn is not None:
                raise ValueError(f"side_function(): function %{self._fn.id} was not ended")
        finally:
            self._fn = saved

    def function_parameter(self, type_id: int) -> int:
        fn = self._function("function_parameter")
        if fn.blocks:
            raise ValueError("function_parameter() after the first label()")
        rid = self.new_id()
        fn.head.append(self._inst("OpFunctionParameter", type_id, rid, ()))
        return rid

    def label(self, label_id: int | None = None) -> int:
        fn = self._function("label")
        if fn.blocks and fn.blocks[-1].terminator is None:
            raise ValueError(f"label(): block %{fn.blocks[-1].label} has no terminator yet")
        label_id = self.new_id() if label_id is None else label_id
        fn.blocks.append(_Block(label_id))
        return label_id

    @property
    def current_label(self) -> int:
        """Label of the block instructions are appended to (for OpPhi incoming edges)."""
        return self._function("current_label").blocks[-1].label

    def _append(self, opname: str, result_type: int | None, result_id: int | None, operands) -> None:
        if opname in _BUILDER_ONLY:
            raise ValueError(f"emit({opname}): use {_BUILDER_ONLY[opname]}")
        fn = self._function(f"emit({opname})")
        if not fn.blocks or fn.blocks[-1].terminator is not None:
            where = f"block %{fn.blocks[-1].label} ended with {fn.blocks[-1].terminator}" if fn.blocks else "no block"
            raise ValueError(f"emit({opname}): {where}; call label() to start a block")
        block = fn.blocks[-1]
        block.code.append(self._inst(opname, result_type, result_id, operands))
        if opname in TERMINATORS:
            block.terminator = opname

    def emit(self, opname: str, result_type: int | None, *operands) -> int | None:
        """Append an instruction to the current block; returns its fresh result id, if it has one."""
        has_id = opcode_info(opname)[2]
        rid = self.new_id() if has_id else None
        self._append(opname, result_type, rid, operands)
        return rid

    def emit_with_id(self, opname: str, result_type: int | None, result_id: int, *operands) -> int:
        """Like emit(), with a result id allocated earlier by new_id() (forward references)."""
        if not opcode_info(opname)[2]:
            raise ValueError(f"{opname} has no result id")
        self._append(opname, result_type, result_id, operands)
        return result_id

    def ext_inst(self, result_type: int, set_id: int, instruction: str | int, *operands) -> int:
        """OpExtInst; a str instruction is looked up in GLSL.std.450 ("Exp", "FMax", ...)."""
        if isinstance(instruction, str) and self._ext_imports.get("GLSL.std.450") != set_id:
            raise ValueError(f"ext_inst({instruction!r}): names resolve only for the GLSL.std.450 set")
        return self.emit("OpExtInst", result_type, set_id, instruction, *operands)

    def end_function(self) -> None:
        fn = self._function("end_function")
        for b in fn.blocks:
            if b.terminator is None:
                raise ValueError(f"end_function(): block %{b.label} of function %{fn.id} has no terminator")
        if fn.locals and not fn.blocks:
            raise ValueError(f"end_function(): function %{fn.id} has local variables but no blocks")
        body: list[list[int]] = list(fn.head)
        for i, b in enumerate(fn.blocks):
            body.append(instruction(g.OPCODES["OpLabel"][0], [b.label]))
            body += fn.locals if i == 0 else []
            body += b.code
        body.append(instruction(g.OPCODES["OpFunctionEnd"][0], []))
        self._functions += body
        self._fn = None

    # -- output -------------------------------------------------------------------------
    def _interface(self) -> list[int]:
        if self.version >= (1, 4):
            return [v for v, _ in self._global_vars]
        io = (g.ENUMS["StorageClass"]["Input"], g.ENUMS["StorageClass"]["Output"])
        return [v for v, sc in self._global_vars if sc in io]

    def words(self) -> list[int]:
        if self._fn is not None:
            raise ValueError(f"function %{self._fn.id} is not ended; call end_function()")
        header = [g.MAGIC_NUMBER, (self.version[0] << 16) | (self.version[1] << 8), GENERATOR, self._bound, 0]
        sections: list[list[list[int]]] = [
            [self._inst("OpCapability", None, None, (c,)) for c in self._capabilities],
            [self._inst("OpExtension", None, None, (e,)) for e in self._extensions],
            [self._inst("OpExtInstImport", None, i, (n,)) for n, i in self._ext_imports.items()],
            [self._inst("OpMemoryModel", None, None, self._memory_model)],
            [self._inst("OpEntryPoint", None, None,
                        (m, f, n, self._interface() if i is None else i)) for m, f, n, i in self._entry_points],
            self._exec_modes, self._debug_source, self._debug_names, self._annotations,
            self._globals, self._functions,
        ]
        out = header
        for section in sections:
            for inst in section:
                out += inst
        return out

    def assemble(self) -> bytes:
        w = self.words()
        return struct.pack(f"<{len(w)}I", *w)


__all__ = ["ModuleBuilder", "SUPPORTED_VERSIONS"]
