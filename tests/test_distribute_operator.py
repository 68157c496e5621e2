"""The ``distribute`` task's behaviour: it defers (no worker slot) until every council is accepted,
then publishes to every requester and emails each one once; a rerun publishes and sends nothing.

Operator level, with the real trigger run on an event loop (what the triggerer does), a real
ledger, Azurite and a real SMTP server (aiosmtpd).
"""

from __future__ import annotations

import asyncio
import threading

import pytest

from test_distribute import (  # noqa: F401 - fixtures and helpers shared with the delivery tests
    EDINBURGH,
    GLASGOW,
    IS_CONTAINER,
    SG_PREFIX,
    _accept,
    _current,
    _loaded,
    _open,
    specs,
)


def test_distribute_waits_deferred_until_all_accepted_then_delivers_and_notifies_once(
    specs, azurite, smtp, clean_ledger, monkeypatch  # noqa: F811
):
    from airflow.exceptions import TaskDeferred

    from lgdp.airflow.distribute import AcceptanceTrigger, DistributeOperator

    monkeypatch.setenv("LGDP_POLL_INTERVAL_SECONDS", "0.2")
    loaded = _loaded()
    period = _current(loaded)
    _open(loaded, period)
    _accept(loaded, period.label, EDINBURGH, n=12, seed=1)

    op = DistributeOperator(task_id="distribute", return_id="clas", period=period.label)
    assert op.trigger_rule == "all_done"
    with pytest.raises(TaskDeferred) as deferred:
        op.execute(context={})
    trigger = deferred.value.trigger
    assert isinstance(trigger, AcceptanceTrigger) and deferred.value.method_name == "resume"
    path, kwargs = trigger.serialize()
    assert path == "lgdp.airflow.distribute.AcceptanceTrigger" and kwargs["period"] == period.label
    assert azurite.blobs("clas") == {}  # nothing published while a council is outstanding

    async def wait_while_glasgow_is_accepted():
        later = threading.Timer(1.0, lambda: _accept(loaded, period.label, GLASGOW, n=8, seed=2))
        later.start()
        try:
            async for event in AcceptanceTrigger(**kwargs).run():
                return event
        finally:
            later.join()

    event = asyncio.run(asyncio.wait_for(wait_while_glasgow_is_accepted(), 120))
    assert event.payload["status"] == "complete"

    out = op.resume(context={}, event=event.payload)
    sg, bench = out["requesters"]["scottish_government"], out["requesters"]["improvement_service"]
    assert sg["published"] and sg["version"] == 1 and sg["rows"] == 20 and sg["reason"] == "all_accepted"
    assert bench["published"] and bench["version"] == 1
    assert f"{SG_PREFIX}/{period.label}/v1/manifest.json" in azurite.blobs("clas")
    assert f"{period.label}/v1/manifest.json" in azurite.blobs(IS_CONTAINER)

    messages = smtp.messages
    assert sorted(m["To"] for m in messages) == ["benchmarking@is.example.org", "cla-statistics@sg.example.org"]
    body = next(m for m in messages if m["To"] == "cla-statistics@sg.example.org").get_body(("plain",)).get_content()
    assert "delivery version 1" in body and "Rows: 20" in body and "manifest.json" in body

    again = op.execute(context={})  # a rerun: nothing new, nothing sent
    assert not again["requesters"]["scottish_government"]["published"]
    assert len(smtp.messages) == 2
