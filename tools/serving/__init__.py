"""What ``t5electra serve``, ``status`` and ``shutdown`` do once their
settings are known: start serving on a local or existing Ray cluster, drain
and stop it (``lifecycle.py``); read a cluster's status and remove the
application (``cluster.py``); present Ray's cluster token (``ray_auth.py``).
The deployments they start know nothing of them."""
