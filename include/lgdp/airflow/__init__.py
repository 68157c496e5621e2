"""The Airflow layer: operators, triggers and the DAG factory. Thin: the work is in ``lgdp``."""
