"""The load tester: closed- and open-loop load over the project's client
(``run.py``) with its workload (``workload.py``) and report (``report.py``),
and a Locust user for teams that load-test with Locust (``locust_user.py``).
The command line's ``t5electra loadtest`` runs it; the bench and the soak
build on it."""
