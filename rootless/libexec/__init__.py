"""Helper executables built from csrc/ (rootless-monitor)."""

import os

MONITOR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "rootless-monitor")
