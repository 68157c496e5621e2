"""Local stand-ins for the platform's external services, for the demo and the tests.

Nothing in production code imports this package: it exists so that the real clients (for
example :mod:`lgdp.collect.graph` through Airflow's azure provider) can be exercised over real
HTTP on one machine. See ``docs/m365-standin.md``.
"""
