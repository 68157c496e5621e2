"""Airflow DAG factory: one DAG (``return_<id>``) per approved spec in return_specs/.

Broken specs are skipped here and reported by ``return_spec_problems.py`` as an import error,
so one bad spec never takes the other returns down.
"""

from lgdp.airflow.factory import register_dags

register_dags(globals())
