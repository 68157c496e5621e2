"""Airflow import error for broken return specs (this file defines no DAG).

If any spec in return_specs/ fails to load, importing this file raises an error that lists each
broken file, line and problem, so it shows in the Airflow UI's import errors while the DAGs of
every valid spec still load from ``returns.py``.
"""

from lgdp.airflow.factory import raise_for_broken_specs

raise_for_broken_specs()
