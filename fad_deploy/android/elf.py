"""Check that a binary is an ELF executable for the phone's ABI before pushing it.

A wrong download (the linux_x86-64 build, or the 32-bit android_arm one on a 64-bit-only
phone) otherwise fails on the device with a cryptic "not executable" message.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from ..errors import FadError

ELF_MAGIC = b"\x7fELF"
HEADER_BYTES = 20  # e_ident (16) + e_type (2) + e_machine (2)
CLASS_BITS = {1: 32, 2: 64}  # e_ident[EI_CLASS]
BYTE_ORDER = {1: "little", 2: "big"}  # e_ident[EI_DATA]

# Android ABI -> (ELF e_machine, word size).
ABI_MACHINE = {
    "arm64-v8a": (183, 64),  # EM_AARCH64
    "armeabi-v7a": (40, 32),  # EM_ARM
    "armeabi": (40, 32),
    "x86_64": (62, 64),  # EM_X86_64
    "x86": (3, 32),  # EM_386
    "riscv64": (243, 64),  # EM_RISCV
}
MACHINE_NAMES = {183: "AArch64", 40: "ARM (32-bit)", 62: "x86-64", 3: "x86 (32-bit)", 243: "RISC-V"}
# The nightly build to download for each ABI (TFLite's measurement page names them so).
DOWNLOAD_NAME = {"arm64-v8a": "android_aarch64_benchmark_model", "armeabi-v7a": "android_arm_benchmark_model"}


@dataclass(frozen=True)
class ElfInfo:
    machine: int
    bits: int

    def describe(self) -> str:
        return f"{MACHINE_NAMES.get(self.machine, f'machine {self.machine}')} {self.bits}-bit ELF"


def read_elf(path: str | Path) -> ElfInfo:
    path = Path(path)
    try:
        with open(path, "rb") as f:
            head = f.read(HEADER_BYTES)
    except OSError as e:
        raise FadError(f"{path}: cannot read the benchmark binary ({e.strerror})")
    if len(head) < HEADER_BYTES or head[:4] != ELF_MAGIC:
        raise FadError(f"{path}: not an ELF executable (a benchmark_model binary for Android is one)")
    bits, order = CLASS_BITS.get(head[4]), BYTE_ORDER.get(head[5])
    if bits is None or order is None:
        raise FadError(f"{path}: corrupt ELF header (class {head[4]}, data {head[5]})")
    return ElfInfo(int.from_bytes(head[18:20], order), bits)


def check_binary_for_abis(path: str | Path, abis: list[str]) -> ElfInfo:
    """The binary's ELF info if the device runs it (its ABI list, preferred first), else an error."""
    info = read_elf(path)
    for abi in abis:
        if ABI_MACHINE.get(abi) == (info.machine, info.bits):
            return info
    wanted = DOWNLOAD_NAME.get(abis[0] if abis else "", "the build for that ABI")
    raise FadError(f"{path}: is a {info.describe()}, but the device runs {', '.join(abis) or 'an unknown ABI'}: "
                   f"download {wanted}")
