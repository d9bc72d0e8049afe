#!/usr/bin/env python3
"""Compatibility fix-ups for a copy of the QPULib source tree (mn416/QPULib).

Upstream QPULib (last commit c2658a55) was written for g++ 4.x, C++11 and
32-bit Raspbian.  rpibuild builds it as a shared library for three settings
upstream never saw: C++20 (recent torch forces ``-std=c++20`` on extensions,
which include QPULib's headers), g++ 12 (Debian bookworm) and 64-bit arm64
in QPU mode.  Each fix below is a small, named rewrite of exact upstream text.

Rules every fix follows:

* it names the file(s) it touches and says why in ``doc``;
* it is idempotent: once applied, a marker comment is left in the file and a
  second run skips it;
* it fails loudly: when an expected upstream pattern is missing or occurs a
  different number of times than expected, the script stops with an error
  naming the fix, the file and the pattern, so a changed upstream is noticed
  instead of silently producing a half-fixed tree.

Only the Python 3 standard library is used: this runs inside minimal Debian
armhf/arm64 build containers.

Usage: ``python3 fixup.py SRC_DIR`` (SRC_DIR is the tree holding ``Lib/``).
Edit a *copy*: the tree is modified in place.
"""

from __future__ import annotations

import argparse
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path

MARKER_PREFIX = "rpibuild-fixup:"


class FixupError(RuntimeError):
    """An expected upstream pattern was not found (upstream changed?)."""


@dataclass(frozen=True)
class Rewrite:
    """One regex substitution that must match exactly ``count`` times."""

    pattern: str
    replacement: str
    count: int = 1


@dataclass(frozen=True)
class Fix:
    """A named, documented set of rewrites applied to one file."""

    name: str
    path: str
    doc: str
    rewrites: tuple[Rewrite, ...] = field(default_factory=tuple)

    def marker(self) -> str:
        return f"// {MARKER_PREFIX} {self.name}"


STDEXCEPT_INCLUDE = Rewrite(
    r"(#include <stdlib.h>\n)",
    r"\1#include <stdexcept>\n",
)

FIXES: tuple[Fix, ...] = (
    Fix(
        name="cxx20-ptr-constructors",
        path="Lib/Source/Ptr.h",
        doc=(
            "C++20 no longer accepts a template-id as a constructor name "
            "(`Ptr<T>(...)` inside `struct Ptr`, DR 2237); use the injected "
            "class name `Ptr(...)` / `PtrExpr(...)`, valid in every standard."
        ),
        rewrites=(
            Rewrite(r"^(\s*)PtrExpr<T>\(\)", r"\1PtrExpr()", 1),
            Rewrite(r"^(\s*)Ptr<T>\(", r"\1Ptr(", 4),
        ),
    ),
    Fix(
        name="ptr-assign-declared",
        path="Lib/Source/Ptr.h",
        doc=(
            "Ptr<T>'s members call assign(), which is only declared later "
            "(Source/Stmt.h). Two-phase name lookup (enforced by modern g++, "
            "upstream relied on -fpermissive) needs a declaration before the "
            "template: add the same prototype Stmt.h declares."
        ),
        rewrites=(
            Rewrite(
                r'(#include "Source/Syntax.h"\n)',
                r"\1\n// Defined in Source/Stmt.cpp, declared in Source/Stmt.h.\n"
                r"void assign(Expr* lhs, Expr* rhs);\n",
            ),
        ),
    ),
    Fix(
        name="lp64-shared-array-bus-address",
        path="Lib/VideoCore/SharedArray.h",
        doc=(
            "GPU bus addresses are 32-bit but were kept in a `void*` and cast "
            "straight to uint32_t, which g++ rejects on 64-bit (arm64) "
            "targets. Go through uintptr_t so the cast is well-formed on "
            "LP64 while the bus address stays 32-bit."
        ),
        rewrites=(
            Rewrite(
                r"gpu_base = \(void\*\) mem_lock\(mb, handle\);",
                "gpu_base = (void*) (uintptr_t) mem_lock(mb, handle);",
            ),
            Rewrite(r"\(uint32_t\) gpu_base", "(uint32_t) (uintptr_t) gpu_base", 2),
        ),
    ),
    Fix(
        name="alloc-failures-throw",
        path="Lib/VideoCore/SharedArray.h",
        doc=(
            "Allocation failures (emulator heap full, GPU memory exhausted, "
            "subscript off the emulator heap) called abort()/exit(), killing "
            "the whole Python process that loaded the library. Throw "
            "std::bad_alloc / std::out_of_range instead so callers report "
            "a clean error."
        ),
        rewrites=(
            Rewrite(r"(#include <assert.h>\n)", r"\1#include <new>\n#include <stdexcept>\n"),
            Rewrite(r"abort\(\);", "throw std::bad_alloc();", 1),
            Rewrite(
                r"(accessing off end of heap\\n\"\);\n\s*)exit\(EXIT_FAILURE\);",
                r'\1throw std::out_of_range("QPULib: accessing off end of heap");',
            ),
            Rewrite(
                r"(Failed to allocate GPU memory\.\"\);\n\s*)exit\(EXIT_FAILURE\);",
                r"\1throw std::bad_alloc();",
            ),
        ),
    ),
    Fix(
        name="lp64-invoke-bus-address",
        path="Lib/VideoCore/Invoke.cpp",
        doc=(
            "invoke() builds the QPU launch messages from pointers holding "
            "32-bit bus addresses and casts them to uint32_t (an error on "
            "arm64). Cast through uintptr_t. Also free the per-call "
            "parameter pointer table (upstream leaks it on every launch) and "
            "throw when the firmware refuses the job instead of only printing."
        ),
        rewrites=(
            Rewrite(
                r"(#include \"VideoCore/VideoCore.h\"\n)", r"\1#include <stdexcept>\n#include <stdint.h>\n"
            ),
            Rewrite(r"\(uint32_t\) paramsPtr\[i\]", "(uint32_t) (uintptr_t) paramsPtr[i]"),
            Rewrite(r"\(uint32_t\) qpuCodePtr;", "(uint32_t) (uintptr_t) qpuCodePtr;"),
            Rewrite(r"\(uint32_t\) launchMsgsPtr", "(uint32_t) (uintptr_t) launchMsgsPtr"),
            Rewrite(
                r"(\n\s*// Launch QPUs\n)",
                r"\n  delete [] paramsPtr;\1",
            ),
            Rewrite(
                r"printf\(\"Failed to invoke kernel on QPUs\\n\"\);",
                'throw std::runtime_error("QPULib: the firmware refused or timed out the QPU job "\n'
                '      "(is the vc4-kms-v3d/vc4-fkms-v3d overlay active?)");',
            ),
        ),
    ),
    Fix(
        name="mailbox-errors-throw",
        path="Lib/VideoCore/Mailbox.cpp",
        doc=(
            "Opening /dev/mem or /dev/vcio and mapping GPU memory called "
            "exit(-1) on failure, which ends the host process (a Python "
            "interpreter for us). Throw std::runtime_error so the error "
            "reaches the caller; a failed munmap is only reported."
        ),
        rewrites=(
            STDEXCEPT_INCLUDE,
            Rewrite(
                r"(Try prefixing command with: sudo\\n\"\);\n\s*)exit \(-1\);",
                r'\1throw std::runtime_error("QPULib: cannot open /dev/mem (needs root)");',
            ),
            Rewrite(
                r"(mmap error %p\\n\", mem\);\n\s*)exit \(-1\);",
                r'\1throw std::runtime_error("QPULib: mmap of GPU memory failed");',
            ),
            Rewrite(r"(munmap error %d\\n\", s\);\n\s*)exit \(-1\);", r"\1/* not fatal */"),
            Rewrite(
                r"(DEVICE_FILE_NAME, MAJOR_NUM\);\n\s*)exit\(-1\);",
                r'\1throw std::runtime_error("QPULib: cannot open " DEVICE_FILE_NAME);',
            ),
        ),
    ),
    Fix(
        name="enable-qpus-throws",
        path="Lib/VideoCore/VideoCore.cpp",
        doc=(
            "enableQPUs() exit()ed when the firmware refused to power the "
            "QPUs; throw instead so the host process survives."
        ),
        rewrites=(
            STDEXCEPT_INCLUDE,
            Rewrite(
                r"(Check your firmware is latest\.\"\);\n\s*)exit\(EXIT_FAILURE\);",
                r'\1throw std::runtime_error("QPULib: unable to enable the QPUs");',
            ),
        ),
    ),
    Fix(
        name="heap-full-throws",
        path="Lib/Common/Heap.h",
        doc=(
            "A full AST heap exit()ed the process; throw std::bad_alloc "
            "instead (the kernel compile fails, the process lives)."
        ),
        rewrites=(
            Rewrite(r"(#include <stdint.h>\n)", r"\1#include <new>\n"),
            Rewrite(r"exit\(-1\);\n(\s*)return \(T\*\) NULL;", r"throw std::bad_alloc();"),
        ),
    ),
    Fix(
        name="ast-heap-size",
        path="Lib/Params.h",
        doc=(
            "In emulation mode the AST heap is never cleared (the "
            "interpreter keeps every kernel's source), and 128 KiB holds only "
            "a few kernels. Default to 16 MiB (malloc'd lazily) and allow "
            "-DAST_HEAP_SIZE=... at library build time."
        ),
        rewrites=(
            Rewrite(
                r"#define AST_HEAP_SIZE 131072\n",
                "#ifndef AST_HEAP_SIZE\n#define AST_HEAP_SIZE (16u << 20)\n#endif\n",
            ),
        ),
    ),
    Fix(
        name="interpreter-shift-mod32",
        path="Lib/Source/Interpreter.cpp",
        doc=(
            "The source interpreter shifted and rotated by the full amount, where "
            "the QPU uses only its low 5 bits: a negative or >= 32 amount is UB in "
            "C++ (and -O2 made it disagree with the emulator). Take the amount "
            "modulo 32 and shift left / rotate on uint32_t, as the hardware does."
        ),
        rewrites=(
            Rewrite(
                r"^  return \(ux >> n\) \| \(x << \(32-n\)\);\n",
                "  n &= 31;  // the QPU reads the low 5 bits of the amount\n"
                "  return (int32_t) (n == 0 ? ux : (ux >> n) | (ux << (32-n)));\n",
            ),
            Rewrite(r"= x<<y; break;", "= (int32_t) (ux << (y & 31)); break;"),
            Rewrite(r"= x>>y; break;", "= x >> (y & 31); break;"),
            Rewrite(r"\(ux >> y\); break;", "(ux >> (y & 31)); break;"),
        ),
    ),
    Fix(
        name="interpreter-ror-break",
        path="Lib/Source/Interpreter.cpp",
        doc=(
            "The interpreter's integer ROR case had no `break` and fell through "
            "into `default: assert(false)`: every rotate-right aborted (or, "
            "with NDEBUG, was silently fine only by luck). Add the break."
        ),
        rewrites=(
            Rewrite(
                r"(case ROR: v\.elems\[i\]\.intVal = rotRight\(x, y\);)\n",
                r"\1 break;\n",
            ),
        ),
    ),
    Fix(
        name="emulator-shift-mod32",
        path="Lib/Target/Emulator.cpp",
        doc=(
            "The target emulator's SHL/SHR/ASR/ROR shifted by the full register "
            "value (UB for negative or >= 32 amounts, and signed SHL of a "
            "negative value is UB before C++20); the QPU uses the amount's low "
            "5 bits. Mask the amount with 31 and shift left / rotate on uint32_t."
        ),
        rewrites=(
            Rewrite(
                r"^  return \(ux >> n\) \| \(x << \(32-n\)\);\n",
                "  n &= 31;  // the QPU reads the low 5 bits of the amount\n"
                "  return (int32_t) (n == 0 ? ux : (ux >> n) | (ux << (32-n)));\n",
            ),
            Rewrite(
                r"\(\(uint32_t\) a\[i\]\.intVal >> b\[i\]\.intVal\);",
                "((uint32_t) a[i].intVal >> (b[i].intVal & 31));",
            ),
            Rewrite(
                r"= a\[i\]\.intVal >> b\[i\]\.intVal;",
                "= a[i].intVal >> (b[i].intVal & 31);",
            ),
            Rewrite(
                r"= a\[i\]\.intVal << b\[i\]\.intVal;",
                "= (int32_t) ((uint32_t) a[i].intVal << (b[i].intVal & 31));",
            ),
        ),
    ),
    Fix(
        name="vector-rotate-mod16",
        path="Lib/Target/Emulator.cpp",
        doc=(
            "rotate() (emulator and interpreter) indexed lanes with (i+n) % 16, "
            "negative for a negative amount: an out-of-bounds write. The QPU "
            "rotates by the amount's low 4 bits (r4[3:0]); take it modulo 16."
        ),
        rewrites=(
            Rewrite(
                r"w\.elems\[\(i\+n\) % NUM_LANES\] = v\.elems\[i\];",
                "w.elems[(i + (n & (NUM_LANES-1))) % NUM_LANES] = v.elems[i];",
            ),
        ),
    ),
    Fix(
        name="emulator-heap-size",
        path="Lib/Target/Emulator.h",
        doc=(
            "The emulator's shared-memory pool was 65536 words (256 KiB), "
            "far too small for real tensors (a 100 x 10^5 matrix is 40 MB). "
            "Default to 2^25 words (128 MiB of lazily committed memory) and "
            "allow -DEMULATOR_HEAP_SIZE=... (must match in library and users)."
        ),
        rewrites=(
            Rewrite(
                r"#define EMULATOR_HEAP_SIZE 65536\n",
                "#ifndef EMULATOR_HEAP_SIZE\n#define EMULATOR_HEAP_SIZE (1u << 25)\n#endif\n",
            ),
        ),
    ),
    Fix(
        name="mailbox-replies-checked",
        path="Lib/VideoCore/Mailbox.cpp",
        doc=(
            "Hardware fix 4: no mailbox reply was checked: a failed ioctl only printed, and "
            "a refused property call (status word 0x80000001) or an unanswered tag left the "
            "request's own words in place, read back as a handle or bus address. Check the "
            "ioctl, the status word (0x80000000 = success) and the tag's response bit "
            "(bit 31 of its value length) of every property call; throw std::runtime_error "
            "otherwise (firmware wiki: Mailbox property interface)."
        ),
        rewrites=(
            Rewrite(r'(#include "Mailbox\.h"\n)', r"\1#include <stdexcept>\n#include <string>\n"),
            Rewrite(
                r"^(static int mbox_property\(int file_desc, void \*buf\)\n)",
                r"static std::string hex32(unsigned v) {\n"
                r'   char s[16]; snprintf(s, sizeof s, "0x%08x", v); return s;\n}\n\n\1',
            ),
            Rewrite(
                r"(   if \(ret_val < 0\) \{\n)"
                r'      printf\("ioctl_set_msg failed:%d\\n", ret_val\);\n(   \}\n)',
                r'\1      throw std::runtime_error("QPULib: mailbox ioctl failed: "'
                r" + std::to_string(ret_val));"
                r"\n\2"
                r"   const unsigned* reply = (const unsigned*) buf;\n"
                r"   // buffer status: 0x80000000 success, 0x80000001 error\n"
                r"   if (reply[1] != 0x80000000u)\n"
                r'      throw std::runtime_error("QPULib: mailbox property tag " + hex32(reply[2])\n'
                r'                               + " failed, status " + hex32(reply[1]));\n'
                r"   if ((reply[4] & 0x80000000u) == 0)  // the tag's response bit\n"
                r'      throw std::runtime_error("QPULib: mailbox property tag " + hex32(reply[2])\n'
                r'                               + " not answered by the firmware");\n',
            ),
        ),
    ),
    Fix(
        name="gpu-memory-freed-on-every-path",
        path="Lib/VideoCore/SharedArray.h",
        doc=(
            "Hardware fix 5: dealloc() passed unmapmem() the element count, not the byte "
            "count (munmap of a quarter of the mapping); alloc() leaked the GPU allocation "
            "(which the firmware does not free at process exit) when locking or mapping "
            "failed, and the SharedArray(n) constructor left arm_base/gpu_base unset. Unmap "
            "n*4 bytes, unlock and free on every failure path, initialise every member, and "
            "free an existing allocation before a second alloc()."
        ),
        rewrites=(
            Rewrite(
                r"(  void alloc\(uint32_t n\) \{\n    // Mailbox, for talking to VideoCore\n"
                r"    int mb = getMailbox\(\);\n)",
                r"\1    if (handle || arm_base) dealloc();\n",
            ),
            Rewrite(
                r"    gpu_base = \(void\*\) \(uintptr_t\) mem_lock\(mb, handle\);\n"
                r"    arm_base = mapmem\(BUS_TO_PHYS\(\(uint32_t\) \(uintptr_t\) gpu_base"
                r"\+GPU_MEM_MAP\), n\*4\);\n",
                "    uint32_t bus = 0;\n"
                "    try {\n"
                "      bus = mem_lock(mb, handle);\n"
                '      if (!bus) throw std::runtime_error("QPULib: cannot lock GPU memory");\n'
                "      arm_base = mapmem(BUS_TO_PHYS(bus + GPU_MEM_MAP), n*4);\n"
                "    } catch (...) {\n"
                "      // The firmware keeps GPU memory past process exit: never leak it.\n"
                "      if (bus) mem_unlock(mb, handle);\n"
                "      mem_free(mb, handle);\n"
                "      handle = 0; size = 0; arm_base = NULL;\n"
                "      throw;\n"
                "    }\n"
                "    gpu_base = (void*) (uintptr_t) bus;\n",
            ),
            Rewrite(
                r"(  SharedArray\(uint32_t n\) \{\n    size = handle = 0;\n)",
                r"\1    arm_base = gpu_base = NULL;\n",
            ),
            Rewrite(
                r"(  void dealloc\(\) \{\n)    // Mailbox, for talking to VideoCore\n"
                r"    int mb = getMailbox\(\);\n\n"
                r"    // Free memory\n    if \(arm_base\) unmapmem\(arm_base, size\);\n"
                r"    if \(handle\) \{\n      mem_unlock\(mb, handle\);\n"
                r"      mem_free\(mb, handle\);\n    \}\n",
                r"\1    // Runs from the destructor: report a failure, never throw.\n"
                r"    if (arm_base) unmapmem(arm_base, size*4);  // bytes, as mapped\n"
                r"    if (handle) {\n"
                r"      try {\n"
                r"        int mb = getMailbox();\n"
                r"        mem_unlock(mb, handle);\n"
                r"        mem_free(mb, handle);\n"
                r"      } catch (const std::exception& e) {\n"
                r'        fprintf(stderr, "QPULib: freeing GPU memory failed: %s\\n", e.what());\n'
                r"      }\n"
                r"    }\n",
            ),
        ),
    ),
    Fix(
        name="disable-qpus-never-throws",
        path="Lib/VideoCore/VideoCore.cpp",
        doc=(
            "disableQPUs() runs from ~Kernel(); with mailbox replies checked "
            "(mailbox-replies-checked) it could throw out of a destructor, which ends the "
            "process. Report the failure on stderr instead."
        ),
        rewrites=(
            Rewrite(
                r"  assert\(numQPUUsers > 0\);\n  int mb = getMailbox\(\);\n  numQPUUsers--;\n"
                r"  if \(numQPUUsers == 0\) \{\n    qpu_enable\(mb, 0\);\n  \}\n",
                "  assert(numQPUUsers > 0);\n  numQPUUsers--;\n  if (numQPUUsers == 0) {\n"
                "    try {\n      qpu_enable(getMailbox(), 0);\n"
                "    } catch (const std::exception& e) {  // runs from ~Kernel(): never throw\n"
                r'      fprintf(stderr, "QPULib: disabling the QPUs failed: %s\\n", e.what());'
                "\n"
                "    }\n  }\n",
            ),
        ),
    ),
    Fix(
        name="gpu-memory-flags-direct",
        path="Lib/VideoCore/SharedArray.h",
        doc=(
            "Hardware fix 6: QPULib allocated GPU memory with 0xC (L1 non-allocating, "
            "through the VC4 L2), which is coherent for the ARM only on the BCM2835 (Pi 1 / "
            "Zero), where ARM accesses go through that L2. Raspberry Pi's hello_fft "
            "(gpu_fft_base.c) uses 0x4 (MEM_FLAG_DIRECT, uncached) on every later SoC: 'ARM "
            "cannot see VC4 L2 on Pi 2'. 0x4 is correct on all models (slower than 0xC only "
            "on the Pi 1), so use it, and keep the bus-to-physical map 0x0. Launching with "
            "noflush=1 stays as upstream: with uncached buffers there is no L2 content to "
            "flush (unverified on hardware, see images/qpulib/README.md)."
        ),
        rewrites=(
            Rewrite(
                r"#define GPU_MEM_FLG 0xC // cached=0xC; direct=0x4\n",
                "// 0x4 = MEM_FLAG_DIRECT: coherent for the ARM on every Pi (0xC only on the Pi 1;\n"
                '// hello_fft gpu_fft_base.c: "ARM cannot see VC4 L2 on Pi 2"). rpibuild fix 6.\n'
                "#define GPU_MEM_FLG 0x4\n",
            ),
        ),
    ),
    Fix(
        name="dma-mutex-register",
        path="Lib/Target/Syntax.h",
        doc=(
            "Hardware fix 7 (1/4): the target language gets the hardware mutex as a special "
            "register (read: acquire, stalling until granted; write: release), for "
            "dma-mutex-guard."
        ),
        rewrites=(
            Rewrite(
                r"(  , SPECIAL_TMU0_S\n)",
                r"\1  , SPECIAL_MUTEX    // rpibuild: read acquires, write releases\n",
            ),
        ),
    ),
    Fix(
        name="dma-mutex-encode",
        path="Lib/Target/Encode.cpp",
        doc="Hardware fix 7 (2/4): encode the mutex register (raddr/waddr 51, either file).",
        rewrites=(
            Rewrite(
                r"(        case SPECIAL_TMU0_S:      \*file = REG_A; return 56;\n)",
                r"\1        case SPECIAL_MUTEX:       *file = REG_A; return 51;\n",
            ),
            Rewrite(
                r"(        case SPECIAL_DMA_ST_WAIT:\n"
                r"          assert\(file == REG_B\); \*mux = 7; return 50;\n)",
                r"\1        case SPECIAL_MUTEX: *mux = file == REG_A ? 6 : 7; return 51;\n",
            ),
        ),
    ),
    Fix(
        name="dma-mutex-emulator",
        path="Lib/Target/Emulator.cpp",
        doc=(
            "Hardware fix 7 (3/4): QPULib's own target emulator runs one QPU at a time, so "
            "acquiring (reading) and releasing (writing) the mutex are no-ops there."
        ),
        rewrites=(
            Rewrite(
                r'(\n)(      printf\("QPULib: can\'t read special register\\n"\);\n)',
                r"\1      else if (reg.regId == SPECIAL_MUTEX) {  // acquire: always granted here\n"
                r"        for (int i = 0; i < NUM_LANES; i++) v.elems[i].intVal = 0;\n"
                r"        return v;\n"
                r"      }\n\2",
            ),
            Rewrite(
                r"(        case SPECIAL_HOST_INT: \{\n          return;\n        \}\n)",
                r"\1        case SPECIAL_MUTEX: {  // release\n          return;\n        }\n",
            ),
        ),
    ),
    Fix(
        name="dma-mutex-pretty",
        path="Lib/Target/Pretty.cpp",
        doc="Hardware fix 7 (4/4): print the mutex register in target-code listings.",
        rewrites=(
            Rewrite(
                r'(    case SPECIAL_TMU0_S:       return "TMU0_S";\n)',
                r'\1    case SPECIAL_MUTEX:        return "MUTEX";\n',
            ),
        ),
    ),
    Fix(
        name="dma-mutex-guard",
        path="Lib/Target/LoadStore.cpp",
        doc=(
            "Hardware fix 7: QPULib programs a DMA load or store (stride setup, DMA setup, "
            "address) from several QPUs at once without the hardware mutex; py-videocore, "
            "hello_fft and VC4C's own code generator hold it around DMA setup. Whether the "
            "VCD's setup registers are per QPU is not documented clearly enough to rely on "
            "it, so acquire the mutex before writing them and release it once the address "
            "is written (the transfer itself runs on and is waited for as before). Costs 2 "
            "instructions per DMA transfer."
        ),
        rewrites=(
            Rewrite(
                r"(void loadStorePass\(Seq<Instr>\* instrs\)\n)",
                r"// rpibuild: acquire the hardware mutex (a read of it stalls until granted).\n"
                r"static Instr genMutexAcquire()\n"
                r"{\n"
                r"  Instr instr;\n"
                r"  instr.tag = ALU;\n"
                r"  instr.ALU.setFlags = false;\n"
                r"  instr.ALU.cond.tag = ALWAYS;\n"
                r"  instr.ALU.op = A_BOR;\n"
                r"  instr.ALU.dest.tag = NONE;\n"
                r"  instr.ALU.dest.regId = 0;\n"
                r"  instr.ALU.srcA.tag = REG;\n"
                r"  instr.ALU.srcA.reg.tag = SPECIAL;\n"
                r"  instr.ALU.srcA.reg.regId = SPECIAL_MUTEX;\n"
                r"  instr.ALU.srcB = instr.ALU.srcA;\n"
                r"  return instr;\n"
                r"}\n\n\1",
            ),
            Rewrite(
                r"(      case LD1:\n)(        sp\.regId = SPECIAL_RD_SETUP;\n(?:.*\n){4}"
                r"        newInstrs\.append\(genMove\(sp, instr\.LD1\.addr\)\);\n)",
                r"\1        newInstrs.append(genMutexAcquire());\n\2"
                r"        sp.regId = SPECIAL_MUTEX;\n"
                r"        newInstrs.append(genMove(sp, qpuId));  // release\n",
            ),
            Rewrite(
                r"(      case ST2:\n)(        sp\.regId = SPECIAL_WR_SETUP;\n(?:.*\n){4}"
                r"        newInstrs\.append\(genMove\(sp, instr\.ST2\.addr\)\);\n)",
                r"\1        newInstrs.append(genMutexAcquire());\n\2"
                r"        sp.regId = SPECIAL_MUTEX;\n"
                r"        newInstrs.append(genMove(sp, qpuId));  // release\n",
            ),
        ),
    ),
    Fix(
        name="qpusim-mode-kernel",
        path="Lib/Kernel.h",
        doc=(
            "qpusim mode (built with -DEMULATION_MODE -DQPUSIM_MODE, see build.sh): a kernel "
            "is compiled and encoded exactly as in QPU mode (the same encode() words) and a call "
            "runs them on VC4C's VideoCore IV emulator (VideoCore/QPUSim.cpp, added by build.sh) "
            "with the uniforms Invoke.cpp passes (QPU id, QPU count, the parameters) and the "
            "emulation heap mapped at its bus addresses. Other modes are unchanged."
        ),
        rewrites=(
            Rewrite(
                r'(#include "VideoCore/VideoCore.h"\n)',
                r'\1#ifdef QPUSIM_MODE\n#include <vector>\n#include "VideoCore/QPUSim.h"\n#endif\n',
            ),
            Rewrite(
                r"^(  int numQPUs;\n)",
                r"\1\n  #ifdef QPUSIM_MODE\n"
                r"  std::vector<uint32_t> qpusimCode;  // encode()'s words\n"
                r"  #endif\n",
            ),
            Rewrite(
                r"^(    numVars = getFreshVarCount\(\);\n)",
                r"\1\n    #ifdef QPUSIM_MODE\n    {\n      Seq<uint32_t> code;\n"
                r"      encode(&targetCode, &code);\n"
                r"      qpusimCode.assign(code.elems, code.elems + code.numElems);\n    }\n    #endif\n",
            ),
            Rewrite(
                r"^(  template <typename\.\.\. us> void call\(us\.\.\. args\) \{\n)"
                r"(    #ifdef EMULATION_MODE\n)",
                r"  #ifdef QPUSIM_MODE\n"
                r"  // Run the encoded kernel on VC4C's emulator (uniforms as in Invoke.cpp).\n"
                r"  template <typename... us> void qpusim(us... args) {\n"
                r"    uniforms.clear();\n"
                r"    nothing(passParam<ts, us>(&uniforms, args)...);\n"
                r"    qpusimInvoke(numQPUs, qpusimCode, &uniforms);\n"
                r"  }\n"
                r"  #endif\n\n"
                r"\1    #if defined(QPUSIM_MODE)\n      qpusim(args...);\n"
                r"    #elif defined(EMULATION_MODE)\n",
            ),
        ),
    ),
)


def apply_fix(root: Path, fix: Fix) -> str:
    """Apply one fix to the tree under ``root``; return 'applied' or 'already applied'."""
    path = root / fix.path
    if not path.is_file():
        raise FixupError(f"{fix.name}: {fix.path} not found under {root}")
    text = path.read_text(encoding="utf-8")
    if fix.marker() in text:
        return "already applied"
    for rewrite in fix.rewrites:
        found = len(re.findall(rewrite.pattern, text, flags=re.MULTILINE))
        if found != rewrite.count:
            raise FixupError(
                f"{fix.name}: in {fix.path} expected {rewrite.count} match(es) of "
                f"{rewrite.pattern!r}, found {found}; upstream QPULib changed? "
                "Update images/qpulib/fixup.py."
            )
        text = re.sub(rewrite.pattern, rewrite.replacement, text, flags=re.MULTILINE)
    # The marker goes last so that a fix is either fully applied or not at all.
    path.write_text(text.rstrip("\n") + f"\n{fix.marker()}\n", encoding="utf-8")
    return "applied"


def apply_all(root: Path) -> list[tuple[str, str]]:
    """Apply every fix in order; return (name, status) pairs."""
    if not (root / "Lib").is_dir():
        raise FixupError(f"{root} has no Lib/ folder: not a QPULib source tree")
    return [(fix.name, apply_fix(root, fix)) for fix in FIXES]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("src_dir", type=Path, help="copy of the QPULib tree (edited in place)")
    parser.add_argument("--list", action="store_true", help="list the fixes and exit")
    args = parser.parse_args(argv)
    if args.list:
        for fix in FIXES:
            print(f"{fix.name} ({fix.path}): {fix.doc}")
        return 0
    try:
        for name, status in apply_all(args.src_dir):
            print(f"fixup {name}: {status}")
    except FixupError as err:
        print(f"fixup.py: error: {err}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
