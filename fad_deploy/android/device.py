"""One benchmark session on a phone: device facts, a private run folder under
/data/local/tmp holding the checked benchmark binary and the pushed models, and its
removal afterwards, also when something fails (use it as a context manager)."""
from __future__ import annotations

import secrets
import subprocess
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path, PurePosixPath

from ..errors import FadError
from .adb import Adb, connect
from .elf import check_binary_for_abis

DEVICE_TMP = PurePosixPath("/data/local/tmp")  # the one place adb shell may write and execute
RUN_PREFIX = "fad-run-"
BINARY_NAME = "benchmark_model"
CPU_POSSIBLE = "/sys/devices/system/cpu/possible"  # e.g. "0-7": the cores the kernel may bring up
EXEC_MODE = "755"

# JSON key -> system property (the first non-empty of several wins: ro.soc.model is Android 12+).
PROPS = {
    "model": ("ro.product.model",),
    "manufacturer": ("ro.product.manufacturer",),
    "soc": ("ro.soc.model", "ro.board.platform"),
    "board": ("ro.board.platform", "ro.product.board"),
    "abi": ("ro.product.cpu.abi",),
    "abilist": ("ro.product.cpu.abilist",),
    "android": ("ro.build.version.release",),
    "sdk": ("ro.build.version.sdk",),
}


@dataclass(frozen=True)
class DeviceFacts:
    serial: str
    model: str
    manufacturer: str
    soc: str
    board: str
    abi: str
    abilist: tuple[str, ...]
    android: str
    sdk: str
    cpu_cores: int | None

    def to_json(self) -> dict:
        return {"kind": "adb", **asdict(self), "abilist": list(self.abilist)}


def count_cpus(possible: str) -> int | None:
    """'0-3,6' -> 5; None when the text is not a CPU range list."""
    total = 0
    for part in possible.strip().split(","):
        lo, _, hi = part.partition("-")
        if not lo.strip().isdigit() or (hi and not hi.strip().isdigit()):
            return None
        total += int(hi or lo) - int(lo) + 1
    return total


def read_cpu_cores(adb: Adb) -> int | None:
    cores = count_cpus(adb.shell(["cat", CPU_POSSIBLE], check=False).stdout)
    if cores is None:  # some kernels hide /sys from the shell user; toybox has nproc
        out = adb.shell(["nproc"], check=False).stdout.strip()
        cores = int(out) if out.isdigit() else None
    return cores


def read_facts(adb: Adb) -> DeviceFacts:
    props = adb.getprops()
    values = {key: next((props[n] for n in names if props.get(n)), "") for key, names in PROPS.items()}
    abilist = tuple(a for a in values.pop("abilist").split(",") if a) or ((values["abi"],) if values["abi"] else ())
    if not values["abi"]:
        raise FadError(f"Android device {adb.serial}: getprop lists no ro.product.cpu.abi (is it an Android device?)")
    return DeviceFacts(serial=adb.serial, abilist=abilist, cpu_cores=read_cpu_cores(adb), **values)


def warn(message: str) -> None:
    print(f"warning: {message}", file=sys.stderr)


class DeviceSession:
    """``with DeviceSession(serial, binary) as s:`` -> facts, run folder, pushed binary."""

    def __init__(self, serial: str | None, binary: str | Path):
        self.binary = Path(binary)
        if not self.binary.is_file():
            raise FadError(f"{self.binary}: benchmark binary not found (download it: see android_harness/README.md)")
        self.adb = connect(serial)
        self.facts = read_facts(self.adb)
        self.elf = check_binary_for_abis(self.binary, list(self.facts.abilist))
        self.run_dir = DEVICE_TMP / f"{RUN_PREFIX}{int(time.time())}-{secrets.token_hex(4)}"
        self.remote_binary = str(self.run_dir / BINARY_NAME)
        self._pushed: dict[Path, str] = {}

    def __enter__(self) -> DeviceSession:
        try:
            self.adb.shell(["mkdir", "-p", str(self.run_dir)])
            self.adb.push(str(self.binary), self.remote_binary)
            self.adb.shell(["chmod", EXEC_MODE, self.remote_binary])
        except FadError as e:
            self.cleanup()
            raise FadError(f"could not install {self.binary.name} in {self.run_dir} on {self.adb.serial}: {e}") from None
        except BaseException:
            self.cleanup()
            raise
        return self

    def __exit__(self, *exc) -> None:
        self.cleanup()

    def remote(self, name: str) -> str:
        return str(self.run_dir / name)

    def push(self, local: str | Path, name: str | None = None) -> str:
        """Copy a host file into the run folder once; its device path."""
        local = Path(local)
        if local not in self._pushed:
            remote = self.remote(name or local.name)
            self.adb.push(str(local), remote)
            self._pushed[local] = remote
        return self._pushed[local]

    def stop_binary(self) -> None:
        """Kill a benchmark still running after a host-side timeout (killing adb leaves it running)."""
        try:
            self.adb.shell(["pkill", "-f", self.remote_binary], check=False)
        except FadError:
            pass

    def cleanup(self) -> None:
        """Remove the run folder; a failure here is reported but never hides the original error."""
        try:
            self.adb.shell(["rm", "-rf", str(self.run_dir)])
        except (FadError, subprocess.SubprocessError, OSError) as e:
            warn(f"could not remove {self.run_dir} from {self.adb.serial}: {e} (remove it with adb shell rm -rf)")
