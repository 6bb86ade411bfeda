"""Trained model versions in the database (migration 0013), on SQLite and
PostgreSQL: stored, read back, pruned, shared between processes' detectors,
copied in from a data dir of an older version, and one trainer at a time."""

from __future__ import annotations

import dataclasses
import importlib.util
import logging

import pytest

from uba.detectors import model_files
from uba.detectors.features import FEATURE_NAMES
from uba.storage.database import Database
from uba.storage.trained_models import ModelRepository

ML = all(importlib.util.find_spec(m) is not None for m in ("numpy", "sklearn"))
NAME = "isolation_forest"


@pytest.fixture(params=["sqlite", "postgresql"])
def database(request, tmp_path, make_database_url):
    url = make_database_url(request.param) or f"sqlite:///{tmp_path}/uba.db"
    database = Database(url)
    database.upgrade()
    yield database
    database.dispose()


def test_versions_are_stored_read_back_and_pruned(database):
    repo = ModelRepository(database)
    assert repo.newest_version(NAME) is None
    payloads = {f"2026010{i}T000000Z": bytes([i]) * (1000 + i) for i in range(4)}
    for version, payload in payloads.items():
        assert repo.add(NAME, version, {"version": version}, payload)
    # Taken: nothing stored, the caller picks another version.
    assert not repo.add(NAME, "20260102T000000Z", {}, b"x")
    assert repo.newest_version(NAME) == "20260103T000000Z"
    assert repo.newest_version("other") is None
    info, payload = repo.read(NAME, "20260101T000000Z")
    assert info == {"version": "20260101T000000Z"} and payload == payloads["20260101T000000Z"]
    with pytest.raises(KeyError):
        repo.read(NAME, "19990101T000000Z")
    assert repo.prune(NAME, keep=2) == 2
    assert repo.versions(NAME) == [("20260103T000000Z", 1003), ("20260102T000000Z", 1002)]


def test_one_process_at_a_time_trains(database):
    first, second = ModelRepository(database), ModelRepository(Database(str(database.url)))
    with first.training_lock(NAME) as got:
        assert got
        with second.training_lock(NAME) as other:
            # PostgreSQL: an advisory lock; SQLite relies on the newest-model check.
            assert other is (database.backend == "sqlite")
        with second.training_lock("another model") as other_name:
            assert other_name
    with second.training_lock(NAME) as again:
        assert again


@pytest.mark.skipif(not ML, reason="needs numpy and scikit-learn")
def test_a_model_trained_in_one_process_is_scored_with_in_another(database, caplog):
    import numpy as np

    from uba.detectors.isolation_forest import IsolationForestDetector

    trainer = IsolationForestDetector(n_estimators=10)
    trainer.use_store(model_files.SharedModelStore(ModelRepository(database)))
    rows = np.random.default_rng(1).normal(size=(500, len(FEATURE_NAMES)))
    trainer.fit(rows)
    saved = trainer._store().save(trainer.model_info, trainer.model_.estimator)
    assert saved.version == trainer.model_info.version
    # A second save of the same version (two trainers in one second) gets a suffix.
    again = trainer._store().save(trainer.model_info, trainer.model_.estimator)
    assert again.version == saved.version + "-2"

    # Another process: its own connection pool, no model of its own.
    other = Database(str(database.url))
    worker = IsolationForestDetector(reload_seconds=1e-9)
    worker.use_store(model_files.SharedModelStore(ModelRepository(other)))
    assert worker._current_model() is not None
    assert worker.model_info == again
    np.testing.assert_array_equal(worker.score(rows[:50]), trainer.score(rows[:50]))

    # A newer version reaches it on its next check; a bad one is refused and the old kept.
    stale = dataclasses.replace(again, version="29990101T000000Z", features=("one",))
    ModelRepository(database).add(NAME, stale.version, stale.to_dict(), b"not a pickle")
    with caplog.at_level(logging.ERROR):
        assert worker._current_model() is not None
    assert worker.model_info == again and "cannot load isolation forest model" in caplog.text
    other.dispose()


@pytest.mark.skipif(not ML, reason="needs numpy and scikit-learn")
def test_a_data_dir_model_of_an_older_version_is_copied_in_once(database, tmp_path, caplog):
    import numpy as np

    from uba.detectors.isolation_forest import IsolationForestDetector

    old = IsolationForestDetector(model_dir=str(tmp_path / "models"), n_estimators=10)
    old.fit(np.random.default_rng(2).normal(size=(300, len(FEATURE_NAMES))))
    info = model_files.save_model(tmp_path / "models", old.model_info, old.model_.estimator)
    # Trained with another scikit-learn: still loaded, with the warning to retrain.
    model_files.save_model(
        tmp_path / "models",
        dataclasses.replace(info, version="20000101T000000Z", libraries={"scikit-learn": "0.1"}),
        old.model_.estimator,
    )
    store = model_files.SharedModelStore(ModelRepository(database))
    copied = store.import_directory(tmp_path / "models", NAME)
    assert copied is not None and copied.version == "20000101T000000Z"
    assert store.import_directory(tmp_path / "models", NAME) is None  # once
    live = IsolationForestDetector(reload_seconds=1e-9)
    live.use_store(store)
    with caplog.at_level(logging.WARNING):
        assert live._current_model() is not None
    assert live.model_info.version == "20000101T000000Z"
    assert "trained with scikit-learn 0.1" in caplog.text
