"""Process roles: the master (gunicorn's arbiter, extended), request workers and
the control worker. These modules compose ``hoodyexec``; the domain never imports
them."""
