"""The demo's supervisor restarts an Airflow component that exits, and gives up loudly when it keeps exiting.

Real processes, no Airflow database: ``airflow version`` stands for a component that exits at once
(as the scheduler does while its database is down). The restarts themselves after a real database
restart are in ``test_collection_faults.py``.
"""

import os

from lgdp.dev import RESUME_HINT, Supervisor


def test_a_component_that_keeps_exiting_is_restarted_then_reported_with_how_to_resume(tmp_path, capsys):
    env = dict(os.environ, AIRFLOW_HOME=str(tmp_path / "airflow"))
    sup = Supervisor(env, quiet=True, components=("version",), restart_limit=2, restart_window=120).start()
    try:
        assert sup.wait() == 1  # returns once it gave up
    finally:
        sup.stop()
    assert sup.restart_count("version") == 2
    assert sup.failure and "exited 3 times" in sup.failure and RESUME_HINT in sup.failure
    err = capsys.readouterr().err
    assert "[lgdp] Airflow's version exited (code 0); restarting it in 1 s" in err
    assert "[lgdp] Airflow's version restarted" in err and RESUME_HINT in err
    assert sup.log_path("version").read_text().strip()  # its output kept where the message says
