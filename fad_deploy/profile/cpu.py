"""This CPU's peak MAC rate, the compute bound of the CPU roofline.

peak MACs/s = cores used x GHz x FMA units per core x MACs per unit per cycle, where
- cores: physical cores in /proc/cpuinfo (unique physical id / core id pairs), capped by
  the thread count of the run;
- GHz: the highest cpuinfo_max_freq in sysfs, else the highest "cpu MHz" in /proc/cpuinfo
  (under a hypervisor that is the nominal clock; turbo can exceed it);
- FMA units: 2 per core, assumed (Intel since Haswell and AMD since Zen 2 have two vector
  FMA pipes; some Xeon Silver/Bronze have one AVX-512 FMA unit); 1 without the fma flag;
- fp32 MACs per unit per cycle = SIMD lanes: 16 (avx512f), 8 (avx/avx2), 4 (sse2, NEON);
- int8 MACs per unit per cycle = vector bytes (vpdpbusd with VNNI; vpmaddubsw on plain
  AVX2, where the widening accumulation costs extra instructions, so the int8 bound is
  optimistic there).
"""
from __future__ import annotations

import os
import platform
from dataclasses import asdict, dataclass
from pathlib import Path

CPUINFO = Path("/proc/cpuinfo")
MAX_FREQ = Path("/sys/devices/system/cpu/cpu0/cpufreq/cpuinfo_max_freq")
ASSUMED_FMA_UNITS = 2


@dataclass(frozen=True)
class CpuPeak:
    model: str
    cores: int
    ghz: float | None
    simd: str
    fma_units: int
    fp32_macs_per_cycle: int  # per FMA unit
    int8_macs_per_cycle: int  # per FMA unit
    vnni: bool

    @property
    def label(self) -> str:
        """The CPU as results name it: model (SIMD, VNNI where present)."""
        return f"{self.model} ({self.simd}{', VNNI' if self.vnni else ''})"

    def macs_per_s(self, threads: int, int8: bool = False) -> float | None:
        if self.ghz is None:
            return None
        per_cycle = self.int8_macs_per_cycle if int8 else self.fp32_macs_per_cycle
        return min(threads, self.cores) * self.ghz * 1e9 * self.fma_units * per_cycle

    def derivation(self) -> str:
        return (f"peak = cores used (<= {self.cores}) x {self.ghz} GHz x {self.fma_units} FMA units (assumed) x "
                f"{self.fp32_macs_per_cycle} fp32 lanes ({self.simd}) or {self.int8_macs_per_cycle} int8 MACs "
                f"per unit-cycle ({'VNNI' if self.vnni else 'no VNNI: optimistic'})")

    def to_dict(self) -> dict:
        return {**asdict(self), "derivation": self.derivation()}


def _cpuinfo() -> list[dict[str, str]]:
    if not CPUINFO.is_file():
        return []
    blocks = []
    for block in CPUINFO.read_text().split("\n\n"):
        fields = {}
        for line in block.splitlines():
            key, sep, value = line.partition(":")
            if sep:
                fields[key.strip()] = value.strip()
        if fields:
            blocks.append(fields)
    return blocks


def cpu_peak() -> CpuPeak:
    blocks = _cpuinfo()
    flags = set(blocks[0].get("flags", blocks[0].get("Features", "")).split()) if blocks else set()
    cores = len({(b.get("physical id"), b.get("core id")) for b in blocks if "core id" in b}) or os.cpu_count() or 1
    if MAX_FREQ.is_file():
        ghz = int(MAX_FREQ.read_text()) / 1e6
    else:
        mhz = [float(b["cpu MHz"]) for b in blocks if "cpu MHz" in b]
        ghz = round(max(mhz) / 1e3, 3) if mhz else None
    if "avx512f" in flags:
        simd, lanes = "avx512f", 16
    elif "avx2" in flags or "avx" in flags:
        simd, lanes = "avx2" if "avx2" in flags else "avx", 8
    else:
        simd, lanes = ("neon" if platform.machine() in ("aarch64", "arm64") else "sse2"), 4
    vnni = bool({"avx512_vnni", "avx_vnni"} & flags)
    fma = ASSUMED_FMA_UNITS if ("fma" in flags or simd == "neon") else 1
    model = blocks[0].get("model name", platform.processor() or platform.machine()) if blocks else platform.machine()
    return CpuPeak(model, cores, ghz, simd, fma, lanes, lanes * 4, vnni)
