import uuid

from tether.ids import id_time, is_run_id, new_id, short_ids


def test_ids_are_uuid7_and_increase_within_a_process():
    ids = [new_id() for _ in range(2000)]
    assert all(uuid.UUID(i).version == 7 for i in ids)
    assert ids == sorted(ids)
    assert len(set(ids)) == len(ids)


def test_id_time_is_the_creation_time():
    import time

    before = time.time()
    rid = new_id()
    assert before - 0.01 <= id_time(rid) <= time.time() + 0.01


def test_short_ids_are_unique_prefixes():
    ids = [new_id() for _ in range(500)]
    shorts = short_ids(ids)
    assert len(set(shorts.values())) == len(ids)
    for rid, short in shorts.items():
        assert rid.startswith(short)
        assert len(short) >= 8
        assert [i for i in ids if i.startswith(short)] == [rid]


def test_is_run_id():
    assert is_run_id(new_id())
    assert not is_run_id("index.db")
    assert not is_run_id(str(uuid.uuid4()))
