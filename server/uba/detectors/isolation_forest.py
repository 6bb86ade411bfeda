"""Isolation Forest over engineered features: events whose combination of
features is rare, even when no single feature crosses a basic detector's
threshold (a slightly early login, from a rarely used device, with three
times the usual API calls).

The model is trained offline on stored history (`train`), on rows replayed
through fresh baselines (`uba.detectors.forest_training`), and saved with
its metadata (`uba.detectors.model_files`). Training learns from
unlabelled history, so the threshold is a quantile of the training scores:
`contamination` is the share of ordinary events that will be flagged, the
false-alarm rate one accepts.

Scoring, three ways, all with higher = more anomalous (see
`uba.detectors.forest_scoring` for the compiled trees):

- `score(rows)`: batch, scikit-learn style: the numbers of one
  `score_samples` call, bit for bit, computed by `BatchForest`.
- `score_one(event, ctx)`: the streaming interface, one event, scored by
  `CompiledForest` (the same numbers, without scikit-learn's per-call cost).
- deferred (`defer=True`): `score_one` only computes the row (the features
  must come from the state before the event is learned) and buffers it;
  `flush()` scores every buffered row in one batch (`BatchForest.at_least`)
  and returns the findings with their events. The ingest writer calls it
  once per group of events. Deferred findings cannot quarantine their
  event (it has been learned by then), so their severity is capped at
  MEDIUM.

Explanation: a flagged row's score is recomputed with each feature in turn
replaced by its training median; the drop in score is that feature's
contribution (exact for this model, needs no extra library, and costs one
small batch per flagged row, never for ordinary rows).

numpy and scikit-learn are imported inside the methods that need them, so
importing this module (and listing detectors) works without them.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import time
from array import array
from collections.abc import Iterable
from datetime import UTC, datetime
from types import MappingProxyType
from typing import Any

from uba.detectors import model_files
from uba.detectors.base import (
    DetectionContext,
    Detector,
    Finding,
    require_fraction,
    require_positive,
    require_severity,
)
from uba.detectors.features import (
    FEATURE_NAMES,
    FEATURES,
    FEATURES_VERSION,
    SESSION_FEATURES,
    STARTS_SESSION,
    event_features,
    observe,
)
from uba.detectors.forest_scoring import BatchForest, CompiledForest
from uba.detectors.forest_training import replay_rows
from uba.domain.anomalies import Feature, Severity, echoed_detectors
from uba.domain.events import ActivityEvent, ActivityType
from uba.domain.shared_state import CACHED_USERS
from uba.domain.user_baseline import DEFAULT_MATURITY, MaturityPolicy

log = logging.getLogger(__name__)

NAME = "isolation_forest"
_UNITS = {f.name: f.unit for f in FEATURES}
# Rows up to which the pure-Python forest beats one batch call (measured:
# docs/detection.md).
_SMALL_BATCH = 4
# Training scores used for the threshold quantiles (a sample: scoring every
# row of a large history would double the training time for little gain).
_THRESHOLD_SAMPLE = 100_000


@dataclasses.dataclass(frozen=True, slots=True)
class LoadedModel:
    """A model in use. Swapped as one object, so a reload (or `use_model`
    from another thread) never pairs one model's trees with another's
    threshold."""

    estimator: Any
    info: model_files.ModelInfo
    forest: CompiledForest
    medians: tuple[float, ...]
    batch: BatchForest


class _Pending:
    """The rows `score_one` buffers in deferred mode: each event with what
    its finding needs of the baseline, and the feature rows one after the
    other in one flat array of floats (no list per row kept, and the group
    becomes a numpy array without a conversion per row)."""

    __slots__ = ("entries", "rows")

    def __init__(self) -> None:
        self.entries: list[tuple[ActivityEvent, int, bool]] = []
        self.rows = array("d")

    def row(self, i: int) -> list[float]:
        width = len(FEATURE_NAMES)
        return self.rows[i * width : (i + 1) * width].tolist()


def _iso(ts: float | None) -> str | None:
    return None if ts is None else datetime.fromtimestamp(ts, tz=UTC).isoformat()


class IsolationForestDetector(Detector):
    name = NAME
    # The forest sees a new address, device or country through the same
    # baselines the novelty detectors judge: when only those features drive
    # a finding, it repeats their findings rather than adding to them.
    echoes = MappingProxyType(
        {
            "ip_surprise": "new_ip",
            "distinct_ips": "new_ip",
            "device_surprise": "new_device",
            "distinct_devices": "new_device",
            "country_surprise": "new_country",
            "distinct_countries": "new_country",
            # The distance from the last login is impossible_travel's to judge.
            "distance_log_km": "impossible_travel",
        }
    )
    version = "1.3"
    family = "enhanced"
    description = (
        "Isolation Forest over engineered, per-user normalised features (hour, session, API rate, "
        "failures, addresses, devices, bytes, distance): unusual combinations of activity."
    )
    title = "Unusual combination of activity"
    requires = ("numpy", "sklearn")
    # Learned state: deferred findings waiting for flush().
    ready_: list[tuple[ActivityEvent, Finding]]
    # Needs a trained model and the ml extra; enabled in configuration.
    default_enabled = False
    event_types = None

    def __init__(
        self,
        model_dir: str = "",
        contamination: float = 0.0001,
        n_estimators: int = 100,
        max_samples: int = 1024,
        max_train_rows: int = 200_000,
        min_train_rows: int = 1000,
        random_state: int = 0,
        require_mature: bool = True,
        top_features: int = 3,
        severity: str = "low",
        high_severity: str = "medium",
        defer: bool = False,
        max_pending: int | None = None,
        reload_seconds: float = 300.0,
        max_users: int = CACHED_USERS,
    ):
        # Where trained models live ("" = none: use_model/fit/train supply one).
        self.model_dir = model_dir
        # Share of ordinary (training) events flagged: sets the threshold.
        # Every event is scored, so false alerts per user-day are at least
        # contamination x events per user-day (0.0001 x 40 = 0.4%).
        self.contamination = contamination
        # Deeper trees than sklearn's default (256 samples each): a
        # combination of mild deviations sits in the far tail, which
        # shallow trees rank unstably from one seed to the next.
        self.n_estimators = n_estimators
        self.max_samples = max_samples
        # Rows sampled from history for training (bounds memory and time),
        # and the fewest worth a model.
        self.max_train_rows = max_train_rows
        self.min_train_rows = min_train_rows
        self.random_state = random_state
        # Score only users whose baseline is mature (the features are
        # normalised by the baseline; a new user's are noise).
        self.require_mature = require_mature
        self.top_features = top_features
        self.severity = severity
        self.high_severity = high_severity
        # Buffer rows in score_one and score them in flush() (see the module
        # docstring); max_pending bounds the buffer and unflushed findings
        # (None: max_users of them).
        self.defer = defer
        self.max_pending = max_pending
        # How often to look for a newly trained model in the store (the
        # database in the server, else model_dir).
        self.reload_seconds = reload_seconds
        # Users kept in the one-hour windows of the features.
        self.max_users = max_users

    def check_params(self) -> None:
        require_fraction(self, "contamination")
        require_positive(
            self,
            "n_estimators",
            "max_samples",
            "max_train_rows",
            "min_train_rows",
            "top_features",
            "reload_seconds",
            "max_users",
        )
        if self.max_pending is not None:
            require_positive(self, "max_pending")
        require_severity(self, "severity", "high_severity")
        for flag in ("require_mature", "defer"):
            if not isinstance(getattr(self, flag), bool):
                raise ValueError(
                    f"{self.name}.{flag} must be true or false, got {getattr(self, flag)!r}"
                )
        if (
            self.defer
            and max(Severity.parse(self.severity), Severity.parse(self.high_severity))
            >= Severity.HIGH
        ):
            raise ValueError(
                f"{self.name}.severity and high_severity must be below high when defer is on: "
                "deferred findings cannot quarantine their event"
            )
        if not isinstance(self.model_dir, str):
            raise ValueError(f"{self.name}.model_dir must be a path, got {self.model_dir!r}")

    # -- the model ---------------------------------------------------------------

    def use_model(self, estimator: Any, info: model_files.ModelInfo) -> None:
        """Scores with this fitted estimator from now on."""
        if tuple(info.features) != FEATURE_NAMES or info.features_version != FEATURES_VERSION:
            raise ValueError(f"model {info.version} was trained on other features; retrain it")
        medians = tuple(info.medians) or (0.0,) * len(FEATURE_NAMES)
        self.model_ = LoadedModel(
            estimator, info, CompiledForest(estimator), medians, BatchForest(estimator)
        )

    @property
    def model_info(self) -> model_files.ModelInfo | None:
        model = getattr(self, "model_", None)
        return None if model is None else model.info

    def _model(self) -> LoadedModel:
        model = getattr(self, "model_", None)
        if model is None:
            raise ValueError(f"{self.name}: no model; train, fit or use_model first")
        return model

    def use_store(self, store: model_files.ModelStore) -> None:
        """Loads and saves models there from now on instead of model_dir
        (the server's database: every process of a deployment sees one
        model)."""
        self.store_ = store

    def _store(self) -> model_files.ModelStore | None:
        store = getattr(self, "store_", None)
        if store is None and self.model_dir:
            store = self.store_ = model_files.DirectoryModelStore(self.model_dir)
        return store

    def _current_model(self) -> LoadedModel | None:
        """The model to score with; looks for a new one in the store at most
        every reload_seconds."""
        now = time.monotonic()
        if now >= getattr(self, "checked_at_", -math.inf) + self.reload_seconds:
            self.checked_at_ = now
            self.refresh()
        return getattr(self, "model_", None)

    def refresh(self) -> None:
        """Switches to the store's current model if it is another one (a
        model trained by another process). Never raises: a bad model must
        not stop ingest; the old one is kept."""
        store = self._store()
        if store is None:
            return
        try:
            version = store.current_version(NAME)
            info = self.model_info
            if version is None or (info is not None and info.version == version):
                return
            estimator, info = store.load(NAME, version)
            self.use_model(estimator, info)
            self._check_libraries(info)
            log.info(
                "isolation forest model %s loaded from %s (%d rows, threshold %.4f)",
                info.version,
                store.describe(),
                info.rows,
                info.threshold,
            )
        except Exception:
            log.exception("cannot load isolation forest model from %s", store.describe())

    @staticmethod
    def _check_libraries(info: model_files.ModelInfo) -> None:
        import sklearn

        trained = info.libraries.get("scikit-learn")
        if trained and trained != sklearn.__version__:
            log.warning(
                "isolation forest model %s was trained with scikit-learn %s, running %s; retrain "
                "it",
                info.version,
                trained,
                sklearn.__version__,
            )

    def warm_up(self) -> None:
        """Imports numpy and scikit-learn and loads the current model now,
        so the first event does not pay for it."""
        import numpy  # noqa: F401
        import sklearn.ensemble  # noqa: F401

        self._current_model()

    # -- batch, scikit-learn style ------------------------------------------------

    def fit(self, rows: Any, *, facts: dict[str, Any] | None = None) -> IsolationForestDetector:
        """Fits a model on feature rows (n x len(FEATURE_NAMES)) and sets its
        thresholds from the training scores; uses it from now on."""
        import numpy as np
        import sklearn
        from sklearn.ensemble import IsolationForest

        started = time.perf_counter()
        X = np.asarray(rows, dtype=np.float32)
        if X.ndim != 2 or X.shape[1] != len(FEATURE_NAMES) or len(X) < 2:
            raise ValueError(
                f"need at least 2 rows of {len(FEATURE_NAMES)} features, got shape {X.shape}"
            )
        estimator = IsolationForest(
            n_estimators=self.n_estimators,
            max_samples=min(self.max_samples, len(X)),
            random_state=self.random_state,
        )
        estimator.fit(X)
        sample = X
        if len(X) > _THRESHOLD_SAMPLE:
            pick = np.random.default_rng(self.random_state).choice(
                len(X), _THRESHOLD_SAMPLE, replace=False
            )
            sample = X[pick]
        scores = -estimator.score_samples(sample)
        facts = facts or {}
        info = model_files.ModelInfo(
            name=NAME,
            version=model_files.new_version(),
            created_at=datetime.now(UTC).isoformat(),
            window_start=_iso(facts.get("first_ts")),
            window_end=_iso(facts.get("last_ts")),
            events=int(facts.get("events", len(X))),
            rows=len(X),
            features=FEATURE_NAMES,
            features_version=FEATURES_VERSION,
            threshold=float(np.quantile(scores, 1 - self.contamination)),
            high_threshold=float(np.quantile(scores, 1 - self.contamination / 10)),
            contamination=self.contamination,
            medians=tuple(float(m) for m in np.median(X, axis=0)),
            params={
                k: v
                for k, v in self.get_params().items()
                if k
                in (
                    "contamination",
                    "n_estimators",
                    "max_samples",
                    "max_train_rows",
                    "min_train_rows",
                    "random_state",
                    "require_mature",
                )
            },
            libraries={"scikit-learn": sklearn.__version__, "numpy": np.__version__},
            training_seconds=time.perf_counter() - started,
        )
        self.use_model(estimator, info)
        return self

    def score(self, rows: Any) -> Any:
        """Scores of feature rows (numpy array, higher = more anomalous):
        -score_samples(rows), the same numbers, computed by `BatchForest`.
        Rows are converted to float32, the dtype the trees compare in, as
        score_samples converts them."""
        import numpy as np

        return self._model().batch.score(np.asarray(rows, dtype=np.float32))

    @staticmethod
    def _scores(model: LoadedModel, rows: list[list[float]]) -> list[float]:
        if len(rows) <= _SMALL_BATCH:
            return [model.forest.score(row) for row in rows]
        import numpy as np

        return model.batch.score(np.asarray(rows, dtype=np.float32)).tolist()

    def explain(
        self, rows: list[list[float]], scores: list[float], model: LoadedModel | None = None
    ) -> list[list[Feature]]:
        """The features that raised each row's score most: the drop in score
        when the feature is replaced by its training median, as a share of
        the drops of all features (the top `top_features`, largest first)."""
        model = model or self._model()
        medians = model.medians
        probes: list[list[float]] = []
        where: list[tuple[int, int]] = []
        for r, row in enumerate(rows):
            for j, value in enumerate(row):
                if value != medians[j]:
                    probe = list(row)
                    probe[j] = medians[j]
                    probes.append(probe)
                    where.append((r, j))
        drops: list[list[float]] = [[0.0] * len(FEATURE_NAMES) for _ in rows]
        probe_scores = self._scores(model, probes) if probes else []
        for (r, j), probe_score in zip(where, probe_scores, strict=True):
            drops[r][j] = max(0.0, scores[r] - probe_score)
        explained = []
        for row, row_drops in zip(rows, drops, strict=True):
            total = sum(row_drops)
            ranked = sorted(range(len(row)), key=lambda j: -row_drops[j])[: self.top_features]
            explained.append(
                [
                    Feature(FEATURE_NAMES[j], float(row[j]), row_drops[j] / total if total else 0.0)
                    for j in ranked
                    if row_drops[j] > 0
                ]
            )
        return explained

    # -- training -------------------------------------------------------------------

    def train(
        self,
        events: Iterable[ActivityEvent],
        *,
        maturity: MaturityPolicy = DEFAULT_MATURITY,
        save: bool = True,
        keep: int = 5,
    ) -> model_files.ModelInfo:
        """Replays stored history (ActivityEvents of all users, in time
        order), fits a model on a sample of at most max_train_rows rows,
        saves it as the current version in its store (the database, or
        model_dir; when there is one and `save`), and scores with it from
        now on."""
        started = time.perf_counter()
        rows, facts = replay_rows(
            events,
            self.max_train_rows,
            require_mature=self.require_mature,
            maturity=maturity,
            seed=self.random_state,
        )
        if len(rows) < self.min_train_rows:
            raise ValueError(
                f"not enough history to train: {len(rows)} rows from users with a mature baseline "
                f"in {facts['events']} events; need {self.min_train_rows}"
            )
        self.fit(rows, facts=facts)
        model = self._model()
        info = dataclasses.replace(model.info, training_seconds=time.perf_counter() - started)
        store = self._store()
        if save and store is not None:
            info = store.save(info, model.estimator, keep=keep)
        self.model_ = dataclasses.replace(model, info=info)
        return info

    # -- streaming ------------------------------------------------------------------

    def score_one(self, event: ActivityEvent, ctx: DetectionContext) -> list[Finding]:
        if event.type is ActivityType.LOGIN_FAILURE:
            # A failed login let nobody in. What is odd about it (where from,
            # when, how many) is the failed-login detectors' and novelty's to
            # judge; the forest's finding only added a signal to a story with
            # no access in it (each account a botnet tried was an incident).
            return []
        model = self._current_model()
        baseline = ctx.baseline
        mature = baseline.mature
        if model is None or (self.require_mature and not mature):
            return []
        row = event_features(event, baseline, ctx.shared, ctx.clock, int(self.max_users))
        if self.defer:
            pending = getattr(self, "pending_", None)
            if pending.__class__ is not _Pending:
                pending = self.pending_ = _Pending()
            pending.entries.append((event, baseline.observation_count, mature))
            pending.rows.extend(row)
            if len(pending.entries) >= self._max_pending():
                self._drain()
            return []
        score = model.forest.score(row)
        if score < model.info.threshold:
            return []
        (explained,) = self.explain([row], [score], model)
        return [
            self._finding(model, score, explained, baseline.observation_count, mature, event.type)
        ]

    def learn_one(self, event: ActivityEvent, ctx: DetectionContext) -> None:
        observe(event, ctx.shared, ctx.clock, int(self.max_users))

    def _max_pending(self) -> int:
        return int(self.max_users if self.max_pending is None else self.max_pending)

    def flush(self) -> list[tuple[ActivityEvent, Finding]]:
        """Scores the rows buffered by `score_one` in deferred mode, in one
        call, and returns the findings with the event each is about."""
        self._drain()
        ready, self.ready_ = getattr(self, "ready_", []), []
        return ready

    def _drain(self) -> None:
        pending, self.pending_ = getattr(self, "pending_", None), _Pending()
        if pending.__class__ is not _Pending or not pending.entries:
            return
        model = self._model()
        count = len(pending.entries)
        if count <= _SMALL_BATCH:
            scores = self._scores(model, [pending.row(i) for i in range(count)])
            flagged = [
                (i, score) for i, score in enumerate(scores) if score >= model.info.threshold
            ]
        else:
            # One batch; only the flagged rows (about contamination of them) are scored in full.
            import numpy as np

            X = np.frombuffer(pending.rows, dtype=np.float64).reshape(count, len(FEATURE_NAMES))
            where, scores = model.batch.at_least(X.astype(np.float32), model.info.threshold)
            flagged = list(zip(where.tolist(), scores.tolist(), strict=True))
        if not flagged:
            return
        explained = self.explain(
            [pending.row(i) for i, _ in flagged], [score for _, score in flagged], model
        )
        ready = getattr(self, "ready_", None)
        if ready is None:
            ready = self.ready_ = []
        for (i, score), features in zip(flagged, explained, strict=True):
            event, observations, mature = pending.entries[i]
            finding = self._finding(model, score, features, observations, mature, event.type)
            ready.append((event, finding))
        bound = self._max_pending()
        if len(ready) > bound:  # nobody flushes: keep memory bounded
            log.warning(
                "isolation forest: %d deferred findings never flushed; dropping the oldest",
                len(ready) - bound,
            )
            del ready[: len(ready) - bound]

    def _finding(
        self,
        model: LoadedModel,
        score: float,
        features: list[Feature],
        observations: int,
        mature: bool,
        kind: ActivityType,
    ) -> Finding:
        info = model.info
        high = score >= info.high_threshold
        medians = dict(zip(FEATURE_NAMES, model.medians, strict=False))
        parts = [
            f"{f.name} {f.value:.2f} {_UNITS[f.name]} (typical {medians[f.name]:.2f})"
            for f in features
        ]
        reason = (
            f"unusual combination of activity for this user (isolation score {score:.3f}, "
            f"threshold {info.threshold:.3f}, model {info.version})"
        )
        if parts:
            reason += ": " + ", ".join(parts)
        if kind in STARTS_SESSION:
            # A login's session length (0) is every login's, not evidence,
            # whatever the explanation makes of it against the median event
            # (one well into a session): it explains no share of the score,
            # so it does not stop the finding repeating novelty.
            features = [
                dataclasses.replace(f, contribution=0.0) if f.name in SESSION_FEATURES else f
                for f in features
            ]
        repeats = echoed_detectors(features, self.echoes)
        if high and repeats:
            # The novelty detectors judge a new address, device or country;
            # the forest seeing only that adds nothing to raise it by.
            high = False
            reason += f"; {self.severity.upper()}: only what {', '.join(repeats)} judge"
        return Finding(
            score=score,
            severity=Severity.parse(self.high_severity if high else self.severity),
            reason=reason,
            observed=f"isolation score {score:.3f}",
            expected=f"below {info.threshold:.3f}",
            features=tuple(features),
            baseline_observations=observations,
            baseline_mature=mature,
        )


def train(events: Iterable[ActivityEvent], model_dir: str, **params: Any) -> model_files.ModelInfo:
    """Trains and saves a model from history: the detector's `train` with
    the given hyper-parameters (as in its configuration)."""
    detector = IsolationForestDetector(model_dir=model_dir, **params)
    detector.check_params()
    return detector.train(events)
