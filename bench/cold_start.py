"""Cold start: process launch to a shown, painted main window — QuantDesk vs a bare PySide6 window.

Each run is a fresh interpreter (``python -m quantdesk gui`` path through ``run_app``'s window, on the
offscreen platform); the child stamps the wall clock once the window has been shown and painted.
The reference is the floor for any PySide6 app: a bare QMainWindow with one label. Medians of N
alternating runs. Target: QuantDesk under 2 s on this machine.

    .venv/bin/python bench/cold_start.py [--runs 5] [--page hardware]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time

from _common import ROOT, scratch_dir

OURS = r"""
import sys, time
from PySide6.QtCore import QTimer
from PySide6.QtWidgets import QApplication
app = QApplication([])
from quantdesk.hardware.detect import resolve_hardware
from quantdesk.gui.app import MainWindow
w = MainWindow(resolve_hardware())
w.show_page(sys.argv[1])
w.show()
def shown():
    w.grab()  # a full paint of the window
    print(time.time(), flush=True)
    app.quit()
QTimer.singleShot(0, shown)
app.exec()
"""

BARE = r"""
import sys, time
from PySide6.QtCore import QTimer
from PySide6.QtWidgets import QApplication, QLabel, QMainWindow
app = QApplication([])
w = QMainWindow()
w.setCentralWidget(QLabel("hello"))
w.resize(1100, 700)
w.show()
def shown():
    w.grab()
    print(time.time(), flush=True)
    app.quit()
QTimer.singleShot(0, shown)
app.exec()
"""


def once(code: str, page: str, env: dict[str, str]) -> float:
    t0 = time.time()
    out = subprocess.run([sys.executable, "-c", code, page], capture_output=True, text=True, env=env, cwd=ROOT,
                         timeout=120)
    if out.returncode != 0:
        raise SystemExit(out.stderr)
    return float(out.stdout.strip().splitlines()[-1]) - t0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--page", default="hardware")
    args = parser.parse_args()
    env = {**os.environ, "QT_QPA_PLATFORM": "offscreen", "QUANTDESK_NO_AUTO_REFRESH": "1",
           "QUANTDESK_HOME": str(scratch_dir("qd-cold-"))}
    once(OURS, args.page, env)  # first run warms the OS file cache; not counted
    ours, bare = [], []
    for _ in range(args.runs):
        ours.append(once(OURS, args.page, env))
        bare.append(once(BARE, args.page, env))
    o, b = statistics.median(ours), statistics.median(bare)
    print(f"Cold start to a painted window ({args.page} page), median of {args.runs} alternating runs")
    print()
    print("| program | median | min | max |")
    print("|---|---|---|---|")
    print(f"| QuantDesk main window | {o:.2f} s | {min(ours):.2f} s | {max(ours):.2f} s |")
    print(f"| bare PySide6 window (reference) | {b:.2f} s | {min(bare):.2f} s | {max(bare):.2f} s |")
    print(f"\nratio QuantDesk / bare: {o / b:.2f}; target < 2 s: {'met' if o < 2 else 'NOT met'}")
    return 0 if o < 2 else 1


if __name__ == "__main__":
    raise SystemExit(main())
