"""A thin client for the `adb` executable: device listing and choice, shell, push, pull.

Every call has a timeout, and every failure the user can fix (adb missing, no device,
unauthorized, offline, several devices and no serial, a device that went away) becomes a
one-line :class:`FadError` that says what to do.
"""
from __future__ import annotations

import re
import shlex
import shutil
import subprocess
from dataclasses import dataclass

from ..errors import FadError

INSTALL_HINT = "install it with `sudo apt-get install adb` (Debian/Ubuntu) or Android's platform-tools"
DEFAULT_TIMEOUT_S = 60.0
TRANSFER_TIMEOUT_S = 300.0  # push/pull of a benchmark binary (~5 MB) over slow USB 2 cables
READY = "device"  # the state `adb devices` gives a usable device
PROP_LINE = re.compile(r"^\[(?P<key>[^\]]+)\]: \[(?P<value>.*)\]$")  # `getprop` with no name lists "[k]: [v]"

# What each bad state means for the user, keyed by the state `adb devices` prints.
STATE_ADVICE = {
    "unauthorized": "unlock the phone and accept the 'Allow USB debugging?' prompt, then run again",
    "offline": "reconnect the USB cable (or run `adb kill-server`), then run again",
    "no permissions": "this user may not open the USB device: add a udev rule for the phone "
                      "(Debian: `sudo apt-get install android-sdk-platform-tools-common`) and replug it",
    "recovery": "the phone is in recovery mode: reboot it into Android",
    "sideload": "the phone is in sideload mode: reboot it into Android",
    "bootloader": "the phone is in the bootloader: reboot it into Android",
}


class AdbTimeout(FadError):
    """An adb call ran past its timeout (adb was killed; a device command may still run)."""


@dataclass(frozen=True)
class DeviceEntry:
    """One line of `adb devices -l`."""

    serial: str
    state: str
    info: str = ""  # "product:... model:... transport_id:..."


def find_adb() -> str:
    path = shutil.which("adb")
    if path is None:
        raise FadError(f"adb not found on PATH: {INSTALL_HINT}")
    return path


def parse_devices(text: str) -> list[DeviceEntry]:
    """Parse `adb devices -l` output (the header, daemon notes and blank lines are skipped)."""
    entries = []
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith(("*", "List of devices", "adb server")):
            continue
        serial, rest = (line.split(None, 1) + [""])[:2]
        # States are one word except "no permissions (...)", which carries advice in brackets.
        if rest.startswith("no permissions"):
            state, info = "no permissions", rest[len("no permissions"):].strip()
        else:
            state, _, info = rest.partition(" ")
        if not state:
            raise FadError(f"cannot read this line of `adb devices -l`: {line!r}")
        entries.append(DeviceEntry(serial, state, info.strip()))
    return entries


def check_state(entry: DeviceEntry) -> DeviceEntry:
    if entry.state != READY:
        advice = STATE_ADVICE.get(entry.state, "check the phone and the cable")
        raise FadError(f"Android device {entry.serial} is {entry.state}: {advice}")
    return entry


def choose_device(entries: list[DeviceEntry], serial: str | None) -> DeviceEntry:
    """The device to use: the one named by ``serial``, else the only one attached."""
    listing = ", ".join(f"{e.serial} ({e.state})" for e in entries)
    if serial:
        for e in entries:
            if e.serial == serial:
                return check_state(e)
        raise FadError(f"Android device {serial!r} not found; adb sees: {listing or 'no devices'}")
    if not entries:
        raise FadError("no Android device found (`adb devices -l` lists none): connect a phone with "
                       "USB debugging enabled (Settings > Developer options)")
    if len(entries) > 1:
        raise FadError(f"{len(entries)} Android devices attached ({listing}): choose one with "
                       f"--device adb:SERIAL")
    return check_state(entries[0])


def adb_error(args: list[str], result: subprocess.CompletedProcess) -> FadError:
    """A one-line error from a failed adb call, with advice for the states users can fix."""
    text = (result.stderr or "") + (result.stdout or "")
    for state, advice in STATE_ADVICE.items():
        if f"device {state}" in text or f"device is {state}" in text:
            return FadError(f"adb {' '.join(args[:2])}: the device is {state}: {advice}")
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    detail = lines[-1] if lines else f"exit status {result.returncode}"
    return FadError(f"adb {' '.join(args)} failed: {detail[:300]}")


class Adb:
    """adb bound to one device (``serial``), or to none for `adb devices`."""

    def __init__(self, serial: str | None = None, executable: str | None = None):
        self.executable = executable or find_adb()
        self.serial = serial

    def _call(self, args: list[str], timeout: float, check: bool = True) -> subprocess.CompletedProcess:
        cmd = [self.executable, *(["-s", self.serial] if self.serial else []), *args]
        try:
            result = subprocess.run(cmd, capture_output=True, text=True, errors="replace", timeout=timeout)
        except subprocess.TimeoutExpired:
            raise AdbTimeout(f"adb {' '.join(args)[:200]} did not finish within {timeout:g} s") from None
        if check and result.returncode != 0:
            raise adb_error(args, result)
        return result

    def devices(self) -> list[DeviceEntry]:
        return parse_devices(self._call(["devices", "-l"], DEFAULT_TIMEOUT_S).stdout)

    def shell(self, argv: list[str], timeout: float = DEFAULT_TIMEOUT_S, check: bool = True
              ) -> subprocess.CompletedProcess:
        """Run one command on the device; ``argv`` is quoted here (adb joins words with spaces)."""
        return self._call(["shell", " ".join(shlex.quote(a) for a in argv)], timeout, check)

    def getprops(self) -> dict[str, str]:
        """Every system property in one round trip."""
        lines = self.shell(["getprop"]).stdout.splitlines()
        return {m["key"]: m["value"] for m in map(PROP_LINE.match, lines) if m}

    def push(self, local: str, remote: str, timeout: float = TRANSFER_TIMEOUT_S) -> None:
        self._call(["push", str(local), remote], timeout)

    def pull(self, remote: str, local: str, timeout: float = TRANSFER_TIMEOUT_S) -> None:
        self._call(["pull", remote, str(local)], timeout)


def connect(serial: str | None) -> Adb:
    """adb bound to the chosen, ready device."""
    entry = choose_device(Adb().devices(), serial)
    return Adb(entry.serial)
