"""Distribution: validated data to each requester's storage, only what they are entitled to.

Compute (no I/O): ``select`` decides which versions are accepted and reads their rows,
``pseudonymise``, ``suppress``, ``formats``, ``build`` and ``manifest`` turn them into files.
I/O: ``publish`` (the requester's Azure container through ``WasbHook``, or a local folder) and
``signoff`` (files requesters write back). ``deliver`` ties one delivery together through the
ledger (``lgdp.deliveries``); the Airflow operator is ``lgdp.airflow.distribute``.
See ``docs/distribution.md``.
"""
