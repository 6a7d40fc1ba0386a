"""hoodyexec: turn Python files into live HTTP endpoints.

This package is the domain: settings, home layout, the IPC protocol and link,
and the HTTP apps. It never imports ``workers``, ``conf`` or gunicorn, so all of
it is testable in-process.
"""

__version__ = "0.1.0"
