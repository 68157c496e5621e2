"""Local Government Data Platform: the domain package.

Everything here computes or talks to the platform's own services (the ledger database,
storage, mail) without needing Airflow; ``lgdp.airflow`` is the thin layer that DAGs use.
"""

__version__ = "0.1.0"
