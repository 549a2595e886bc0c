"""A private D-Bus daemon for the fake BlueZ: started on a temporary socket, torn down
after. Point bleak at it with DBUS_SYSTEM_BUS_ADDRESS (see `env()`), set before bleak opens
its bus; nothing else on the machine sees it."""
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

__all__ = ["BusUnavailable", "PrivateBus"]

_CONFIG = """<!DOCTYPE busconfig PUBLIC "-//freedesktop//DTD D-Bus Bus Configuration 1.0//EN"
 "http://www.freedesktop.org/standards/dbus/1.0/busconfig.dtd">
<busconfig>
  <type>session</type>
  <listen>unix:path={socket}</listen>
  <auth>EXTERNAL</auth>
  <policy context="default">
    <allow own="*"/>
    <allow send_destination="*" eavesdrop="true"/>
    <allow eavesdrop="true"/>
  </policy>
  <limit name="max_incoming_bytes">1000000000</limit>
  <limit name="max_outgoing_bytes">1000000000</limit>
  <limit name="max_message_size">1000000000</limit>
  <limit name="max_replies_per_connection">1000000</limit>
  <limit name="max_match_rules_per_connection">100000</limit>
</busconfig>
"""


class BusUnavailable(RuntimeError):
    """dbus-daemon is missing or did not start."""


class PrivateBus:
    """`with PrivateBus() as bus: bus.address` -- a dbus-daemon of our own.

    It accepts any name (the fake claims `org.bluez`) and only this user's connections."""

    def __init__(self, directory: str | os.PathLike | None = None):
        self._own_dir = directory is None
        self.directory = Path(directory or tempfile.mkdtemp(prefix="cityloop-dbus-"))
        self.address: str | None = None
        self._proc: subprocess.Popen | None = None

    def start(self) -> "PrivateBus":
        exe = shutil.which("dbus-daemon")
        if exe is None:
            raise BusUnavailable("dbus-daemon is not installed (Debian: apt-get install dbus) "
                                 "/ 未安装 dbus-daemon")
        self.directory.mkdir(parents=True, exist_ok=True)
        config = self.directory / "bus.conf"
        config.write_text(_CONFIG.format(socket=self.directory / "bus.sock"))
        self._proc = subprocess.Popen([exe, f"--config-file={config}", "--nofork", "--print-address=1"],
                                      stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        line = self._proc.stdout.readline().strip()
        if not line:
            err = self._proc.stderr.read() if self._proc.poll() is not None else ""
            self.stop()
            raise BusUnavailable(f"dbus-daemon did not start: {err.strip() or 'no address printed'}")
        self.address = line
        return self

    def env(self) -> dict[str, str]:
        """Environment for a process whose bleak should use this bus as the system bus."""
        return {**os.environ, "DBUS_SYSTEM_BUS_ADDRESS": self.address}

    def stop(self) -> None:
        if self._proc is not None:
            self._proc.terminate()
            try:
                self._proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait()
            for stream in (self._proc.stdout, self._proc.stderr):
                if stream:
                    stream.close()
            self._proc = None
        if self._own_dir:
            shutil.rmtree(self.directory, ignore_errors=True)

    def __enter__(self) -> "PrivateBus":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()
