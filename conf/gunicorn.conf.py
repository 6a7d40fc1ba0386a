# gunicorn settings for hoodyexec: a starting point for fine tuning.
#
# hoodyexec embeds these same values (workers/master.py, GUNICORN_DEFAULTS) and
# uses this file only when the `gunicorn-config` setting points at it (as
# conf/hoodyexec.yaml does). The kit's own settings (bind, workers, timeouts,
# log level, pid file...) always win over values here: change those in
# hoodyexec.yaml, HOODYEXEC_* variables or flags instead.
# Any gunicorn setting may be added (see gunicorn's settings reference).

# The worker class is set by hoodyexec itself (hoodyexec.workers.asgi.HoodyASGIWorker:
# gunicorn's native asyncio "asgi" worker plus a request-head timeout and
# bounded request bodies); it cannot be changed here.
asgi_lifespan = "on"  # the request worker links to the control worker on startup
asgi_loop = "auto"  # uvloop when installed (it is a dependency), else asyncio
keepalive = 5  # seconds a kept-alive connection may idle (capped at header-timeout)
backlog = 2048
errorlog = "-"
capture_output = False
proc_name = "hoodyexec"
control_socket_mode = 0o600
