"""BlueZ without a radio: a private D-Bus daemon (bus.py) and a fake `org.bluez` service on
it (fake.py) that unmodified bleak scans as if it were a real adapter."""
