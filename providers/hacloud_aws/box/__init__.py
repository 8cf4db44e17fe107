"""AWS in a box: an emulated AWS account (moto, pinned) served at the real endpoint names over
TLS, for rehearsing ``hacloud up --provider aws`` and its failover on one machine (issue 18).

Modules: ``layout`` (box directory, fixed ids), ``pki`` (lab CA, endpoint certificate, SSH key),
``moto_ext`` (moto internals: seeded account, admin, auth, quirk patches), ``frontend`` (WSGI
front: path filter, throttling, action log), ``listeners`` (TLS listeners, host or netns),
``control`` (unix-socket control protocol), ``state`` (``CloudState``: moto read in-process),
``daemon`` (start/stop). Needs ``hacloud[aws-box]``.
"""
