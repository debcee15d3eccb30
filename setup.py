"""Builds the one C extension, ``drivers.sip._rtpio`` (the RTP pacer's socket calls).

Everything else is in pyproject.toml. The extension is optional: if it cannot be built the
engine uses Python's socket methods instead (drivers/sip/pacer.py), at more CPU per packet.
"""

import sys

from setuptools import Extension, setup

extensions = []
if sys.platform.startswith("linux"):  # epoll
    extensions.append(Extension("drivers.sip._rtpio", ["drivers/sip/_rtpio.c"], optional=True))

setup(ext_modules=extensions)
