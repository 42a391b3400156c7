"""Clients on a real zfs-fuse pool: datasets and properties, changes, removal, destruction, import from ZFS."""

from __future__ import annotations

import json

import pytest

from appliance.clients import jobs, model, points, removal, service
from appliance.clients.errors import (
    ClientExists,
    ClientNotFound,
    ClientRemoved,
    ConfirmationMismatch,
    ProtectedPointsExist,
)
from appliance.clients.model import ClientSettings
from appliance.store import Store
from appliance.system.errors import Conflict, InvalidInput
from appliance.zfs import datasets, properties
from tests.clients_fixtures import ClientEnv

pytestmark = pytest.mark.zfs
GiB = 1024**3


def children(env: ClientEnv, name: str) -> list[str]:
    root = f"{env.pool.name}/clients/{name}"
    return [n[len(root) + 1 :] for n in datasets.list_names(env.zfs, root) if n != root]


def test_create_makes_datasets_by_kind_with_properties(client_env: ClientEnv) -> None:
    env = client_env
    smb = env.add("acme-fs1", "smb", quota="1G", rpo="2h", retention_spec="last=5,daily=3", notes="2nd floor\nrack 4")
    agent = env.add("dc01", "agent")
    both = env.add("laptop-7", "both", lock="1d")
    assert children(env, "acme-fs1") == ["share"]
    assert children(env, "dc01") == ["files", "images"]
    assert children(env, "laptop-7") == ["files", "images", "share"]
    ds = datasets.get_dataset(env.zfs, smb.dataset)
    assert ds.quota == GiB
    assert ds.user[model.P_NAME] == "acme-fs1" and ds.user[model.P_KIND] == "smb"
    assert ds.user[model.P_RETENTION] == "last=5,daily=3" and ds.user[model.P_RPO] == "7200"
    assert json.loads(ds.user[model.P_NOTES]) == "2nd floor\nrack 4"
    assert (env.live("acme-fs1")).is_dir()
    assert [c.name for c in service.list_clients(env.store)] == ["acme-fs1", "dc01", "laptop-7"]
    assert service.get_client(env.store, "dc01") == agent
    assert both.settings.lock == 86400
    usage = service.usage(env.zfs, smb)
    assert usage.quota_bytes == GiB and set(usage.areas) == {"share"}


def test_bad_input_changes_nothing(client_env: ClientEnv) -> None:
    env = client_env
    env.add("acme")
    before = datasets.list_names(env.zfs, env.pool.name)
    for bad in ("Acme", "acme-", "a_b", "../x", "global"):
        with pytest.raises(InvalidInput):
            env.add(bad)
    with pytest.raises(ClientExists):
        env.add("acme")
    with pytest.raises(InvalidInput):
        env.add("other", quota="1M")
    with pytest.raises(InvalidInput):
        service.update_client(env.store, env.zfs, "acme", by="test", retention="weekly=x")
    assert datasets.list_names(env.zfs, env.pool.name) == before
    assert [c.name for c in service.list_clients(env.store, include_removed=True)] == ["acme"]
    with pytest.raises(ClientNotFound):
        service.get_client(env.store, "nobody")


def test_a_dataset_left_on_the_pool_keeps_its_name(client_env: ClientEnv) -> None:
    env = client_env
    env.add("acme")
    service.delete_row(env.store, "acme")  # the database lost it (a fresh data dir, say)
    with pytest.raises(ClientExists, match="on the pool"):
        env.add("acme")


def test_update_writes_zfs_then_database(client_env: ClientEnv) -> None:
    env = client_env
    env.add("acme", "smb", quota="1G")
    changes = {"kind": "both", "quota": "2G", "schedule": "every 15m", "window": "mon-fri 08:00-18:00"}
    updated = service.update_client(env.store, env.zfs, "acme", by="test", **changes)
    assert children(env, "acme") == ["files", "images", "share"]  # a wider kind adds datasets
    ds = datasets.get_dataset(env.zfs, updated.dataset)
    assert ds.quota == 2 * GiB and ds.user[model.P_SCHEDULE] == "every 15m"
    assert ds.user[model.P_WINDOW] == "mon,tue,wed,thu,fri 08:00-18:00"
    narrowed = service.update_client(env.store, env.zfs, "acme", by="test", kind="smb", quota="none")
    assert children(env, "acme") == ["files", "images", "share"]  # nothing is destroyed by a narrower kind
    assert datasets.get_dataset(env.zfs, narrowed.dataset).quota is None
    assert service.get_client(env.store, "acme") == narrowed


def test_remove_keeps_data_and_reattach_brings_it_back(client_env: ClientEnv) -> None:
    env = client_env
    env.add("acme")
    (env.live("acme") / "report.txt").write_text("keep me")
    job = jobs.submit_snapshot(env.store, "acme", by="test")
    env.run_jobs()
    removed = removal.remove_client(env.store, env.zfs, "acme", by="test")
    assert removed.state == "removed"
    assert service.list_clients(env.store) == []
    assert [c.name for c in service.list_clients(env.store, include_removed=True)] == ["acme"]
    assert (env.live("acme") / "report.txt").read_text() == "keep me"
    assert len(points.list_points(env.store, env.zfs, "acme")) == 1
    assert datasets.get_dataset(env.zfs, removed.dataset).user[model.P_STATE] == "removed"
    with pytest.raises(ClientRemoved):
        jobs.submit_snapshot(env.store, "acme", by="test")
    back = removal.reattach_client(env.store, env.zfs, "acme", by="test")
    assert back.active and job
    with pytest.raises(ClientExists):
        removal.reattach_client(env.store, env.zfs, "acme", by="test")


def test_destroy_needs_confirmation_and_respects_pins_and_locks(client_env: ClientEnv) -> None:
    env = client_env
    env.add("acme")
    jobs.submit_snapshot(env.store, "acme", by="test")
    env.run_jobs()
    point = points.list_points(env.store, env.zfs, "acme")[0]
    with pytest.raises(Conflict, match="remove it first"):
        removal.destroy_client(env.store, env.zfs, "acme", confirm="acme", by="test")
    removal.remove_client(env.store, env.zfs, "acme", by="test")
    with pytest.raises(ConfirmationMismatch):
        removal.destroy_client(env.store, env.zfs, "acme", confirm="ACME", by="test")
    removal.reattach_client(env.store, env.zfs, "acme", by="test")
    points.pin(env.store, env.zfs, "acme", point.id, by="test")
    removal.remove_client(env.store, env.zfs, "acme", by="test")
    with pytest.raises(ProtectedPointsExist, match="1 pinned and 0 locked"):
        removal.destroy_client(env.store, env.zfs, "acme", confirm="acme", by="test")
    assert datasets.exists(env.zfs, f"{env.pool.name}/clients/acme")
    removal.reattach_client(env.store, env.zfs, "acme", by="test")
    points.unpin(env.store, env.zfs, "acme", point.id, by="test")
    removal.remove_client(env.store, env.zfs, "acme", by="test")
    removal.destroy_client(env.store, env.zfs, "acme", confirm="acme", by="test")
    assert not datasets.exists(env.zfs, f"{env.pool.name}/clients/acme")
    assert service.list_clients(env.store, include_removed=True) == []
    actions = [r["action"] for r in env.store.query("SELECT action FROM audit WHERE target = 'acme'")]
    assert actions[-1] == "client.destroy"


def test_import_rebuilds_the_database_from_zfs(client_env: ClientEnv, tmp_path: object) -> None:
    env = client_env
    env.add("acme", "both", quota="1G", rpo="1h", lock="2h", notes="ünïcode notes\n2 lines", window="20:00-06:00")
    env.add("dc01", "agent", retention_spec="last=3")
    removal.remove_client(env.store, env.zfs, "dc01", by="test")
    original = {c.name: c for c in service.list_clients(env.store, include_removed=True)}

    fresh = Store.open(env.store.path.with_name("fresh.db"))
    try:
        from appliance.system import settings

        settings.save(fresh, settings.load(env.store))  # type: ignore[arg-type]
        report = service.import_clients(fresh, env.zfs)
        assert sorted(report.added) == ["acme", "dc01"] and report.skipped == {}
        imported = {c.name: c for c in service.list_clients(fresh, include_removed=True)}
        for name, client in original.items():
            assert imported[name].settings == client.settings
            assert (imported[name].uuid, imported[name].state, imported[name].created_at) == (
                client.uuid,
                client.state,
                client.created_at,
            )
        assert service.import_clients(fresh, env.zfs).added == []  # idempotent

        # ZFS wins: a property changed behind the database's back, a dataset destroyed, one malformed
        datasets.set_user_properties(env.zfs, original["acme"].dataset, {model.P_RETENTION: "last=9"})
        datasets.destroy(env.zfs, original["dc01"].dataset, recursive=True)
        datasets.create(env.zfs, f"{env.pool.name}/clients/broken", {model.P_ROLE: "client", model.P_NAME: "x"})
        datasets.create(env.zfs, f"{env.pool.name}/clients/stray")
        report = service.import_clients(fresh, env.zfs)
        assert (report.updated, report.forgotten) == (["acme"], ["dc01"])
        assert set(report.skipped) == {f"{env.pool.name}/clients/broken", f"{env.pool.name}/clients/stray"}
        assert service.get_client(fresh, "acme").settings.retention == "last=9"
        assert [c.name for c in service.list_clients(fresh, include_removed=True)] == ["acme"]
    finally:
        fresh.close()


def test_properties_are_plain_zfs_properties(client_env: ClientEnv) -> None:
    """What travels with the pool is readable with zfs get, one line per fact."""
    env = client_env
    client = env.add("acme", "smb", notes='say "hi"\tthere')
    props = properties.get_one(env.zfs, client.dataset, model.CLIENT_PROPS)
    assert {k: v.value for k, v in props.items()} == model.to_properties(client)
    settings = ClientSettings.build(kind="smb", notes='say "hi"\tthere')
    assert client.settings.notes == settings.notes
