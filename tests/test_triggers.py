"""The folder trigger's pure parts, and that it serialises as the triggerer needs."""

from lgdp.airflow.triggers import MAX_BACKOFF_SECONDS, CouncilFolderTrigger, backoff, new_items


def item(i, etag, modified, folder=False, name=None):
    return {"id": i, "etag": etag, "last_modified": modified, "is_folder": folder, "name": name or f"{i}.xlsx"}


def test_new_items_are_unseen_files_oldest_first():
    listing = [
        item("b", "2", "2026-11-02T10:00:00+00:00"),
        item("a", "1", "2026-11-01T10:00:00+00:00"),
        item("p", "1", "2026-10-01T10:00:00+00:00", folder=True, name="_platform"),
        item("c", "1", "2026-11-03T10:00:00+00:00"),
    ]
    assert [i["id"] for i in new_items(listing, ["c:1"])] == ["a", "b"]
    # the same file with a new eTag is a new version
    assert [i["id"] for i in new_items(listing, ["a:0", "b:2", "c:1"])] == ["a"]


def test_backoff_grows_and_is_capped():
    assert backoff(1, 60) == 120 and backoff(2, 60) == 240
    assert backoff(50, 60) == MAX_BACKOFF_SECONDS


def test_trigger_serialises_to_its_own_class_path_and_kwargs():
    t = CouncilFolderTrigger(folder="clas/2025-26/S12000036", seen=["x:1"], closes_at="2026-10-31T23:59:00+00:00", poll_interval=900)
    path, kwargs = t.serialize()
    assert path == "lgdp.airflow.triggers.CouncilFolderTrigger"
    assert CouncilFolderTrigger(**kwargs).serialize() == (path, kwargs)
