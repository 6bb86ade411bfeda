"""Figures of a suite run, and the report made of them: report.json (every
figure and its runs), report.md (the table, the curves, the notes) and PNG
plots (matplotlib) in the results directory."""

from __future__ import annotations

import dataclasses
import json
import math
import sys
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path

# Every figure the suite produces, in report order: key -> (title, scope).
# scope "backend": one per database; "postgresql" or "sqlite": that
# database only; "any": independent of the database.
FIGURES: dict[str, tuple[str, str]] = {
    "unary_record": ("Unary RecordActivity (default detection), events/s", "backend"),
    "unary_record_detection_off": ("Unary RecordActivity (detection off), events/s", "backend"),
    "batch_detection_off": ("Batch ingest, detection off, events/s", "backend"),
    "batch_detection_basic": ("Batch ingest, basic detection, events/s", "backend"),
    "batch_detection_enhanced": ("Batch ingest, enhanced detection, events/s", "backend"),
    "alert_latency_idle": ("Alert latency, ack to subscriber, idle server", "backend"),
    "alert_latency_under_load": ("Alert latency, ack to subscriber, under batch ingest", "backend"),
    "subscribers_500": ("Unary RecordActivity with 500 idle subscribers, events/s", "backend"),
    "export_csv": ("ExportLogs CSV over gRPC, rows/s", "backend"),
    "export_ndjson": ("ExportLogs NDJSON over gRPC, rows/s", "backend"),
    "rest_record_activity": ("REST via Envoy: RecordActivity, calls/s", "backend"),
    "rest_get_dashboard": ("REST via Envoy: GetDashboard, calls/s", "backend"),
    "isolation_forest_scoring": ("Isolation Forest scoring in the service path, rows/s", "any"),
    "baseline_memory": ("Memory of 100,000 users' mature baselines", "any"),
    "baseline_stored": ("Stored size of a mature baseline", "backend"),
    "startup_basic": ("Start-up time and RSS, basic mode", "backend"),
    "startup_enhanced": ("Start-up time and RSS, enhanced mode", "backend"),
    "growth_ingest": ("Growth: batch ingest rate, largest vs smallest store", "backend"),
    "growth_list_logs": ("Growth: ListLogs first page latency", "backend"),
    "growth_list_incidents": (
        "Growth: ListIncidents first page latency, slowest filter",
        "backend",
    ),
    "growth_dashboard": ("Growth: GetDashboard latency (24 h window)", "backend"),
    "growth_db_size": ("Growth: database size per event", "backend"),
    "multicore_unary": ("Multi-core: unary RecordActivity, 2 processes vs 1", "postgresql"),
    "multicore_batch": (
        "Multi-core: batch ingest with basic detection, 2 processes vs 1",
        "postgresql",
    ),
    "users_memory_per_cached_user": ("Memory per cached user (RSS slope), KB", "any"),
    "users_rate_embedded": (
        "Users: batch ingest at the most distinct users vs the fewest, one embedded process",
        "sqlite",
    ),
    "users_warm_cache": (
        "Users: batch ingest with every user cached vs evicted, one embedded process",
        "sqlite",
    ),
    "users_rate_log": (
        "Users: events stored by one worker behind the event log, most vs fewest users",
        "postgresql",
    ),
    "eventlog_unary_front": (
        "Event log: unary RecordActivity acknowledged by a front end, events/s",
        "postgresql",
    ),
    "eventlog_unary_embedded": (
        "Event log: unary RecordActivity on the embedded server (same run), events/s",
        "postgresql",
    ),
    "eventlog_batch_front": (
        "Event log: batch ingest acknowledged by a front end vs the embedded server",
        "postgresql",
    ),
    "eventlog_workers": ("Event log: events stored, 2 workers vs 1", "postgresql"),
    "eventlog_visible_lag": (
        "Event log: acknowledged to visible in ListLogs, under a steady load",
        "postgresql",
    ),
}


@dataclass
class Figure:
    key: str
    backend: str  # "sqlite", "postgresql" or "any"
    value: float | None
    unit: str
    baseline: str = ""  # what the baseline is
    baseline_value: float | None = None
    baseline_unit: str = ""
    ratio: float | None = None
    target: str = ""
    met: bool | None = None  # None: stated only, or no target for this backend
    note: str = ""
    details: dict = field(default_factory=dict)

    @property
    def title(self) -> str:
        return FIGURES[self.key][0]


def expected_keys(backends: list[str]) -> list[tuple[str, str]]:
    """(key, backend) of every figure a run over `backends` must contain."""
    out = []
    for key, (_title, scope) in FIGURES.items():
        if scope == "any":
            out.append((key, "any"))
        elif scope in ("postgresql", "sqlite"):
            if scope in backends:
                out.append((key, scope))
        else:
            out.extend((key, b) for b in backends)
    return out


class Report:
    def __init__(self, out: Path, machine: dict, params: dict):
        self.out = Path(out)
        self.machine = machine
        self.params = params
        self.started = datetime.now(UTC)
        self.figures: list[Figure] = []
        self.sections: dict[str, dict] = {}  # extra data: growth curves, EXPLAIN plans, notes
        self.notes: list[str] = []

    @classmethod
    def load(cls, path: Path) -> Report:
        """A report from its report.json (to render it again)."""
        data = json.loads(Path(path).read_text())
        report = cls(Path(path).parent, data["machine"], data["params"])
        report.started = datetime.fromisoformat(data["started_at"])
        report.finished = datetime.fromisoformat(data["generated_at"])
        report.duration_s = data["duration_s"]
        known = {f.name for f in dataclasses.fields(Figure)}
        report.figures = [
            Figure(**{k: v for k, v in f.items() if k in known}) for f in data["figures"]
        ]
        report.sections = data["sections"]
        report.notes = data["notes"]
        return report

    def add(self, figure: Figure) -> Figure:
        assert figure.key in FIGURES, figure.key
        self.figures = [
            f for f in self.figures if (f.key, f.backend) != (figure.key, figure.backend)
        ]
        self.figures.append(figure)
        value = "-" if figure.value is None else f"{figure.value:,.4g}"
        ratio = "" if figure.ratio is None else f"  ratio {figure.ratio:.2f}"
        print(
            f"  [{figure.backend}] {figure.key}: {value} {figure.unit}{ratio}"
            + (
                ""
                if figure.met is None
                else f"  target {figure.target}: {'met' if figure.met else 'NOT met'}"
            ),
            flush=True,
        )
        return figure

    def section(self, name: str, backend: str = "any") -> dict:
        return self.sections.setdefault(name, {}).setdefault(backend, {})

    # -- output -------------------------------------------------------------------

    def write(self) -> None:
        self.out.mkdir(parents=True, exist_ok=True)
        finished = getattr(self, "finished", None) or datetime.now(UTC)
        data = {
            "generated_at": finished.isoformat(timespec="seconds"),
            "started_at": self.started.isoformat(timespec="seconds"),
            "duration_s": getattr(self, "duration_s", None)
            or round((finished - self.started).total_seconds(), 1),
            "machine": self.machine,
            "params": self.params,
            "figures": [asdict(f) | {"title": f.title} for f in self.figures],
            "sections": self.sections,
            "notes": self.notes,
        }
        (self.out / "report.json").write_text(json.dumps(data, indent=2, default=_jsonable))
        plots = self._plots()
        (self.out / "report.md").write_text(self._markdown(data, plots))

    # -- Markdown -------------------------------------------------------------------

    def _markdown(self, data: dict, plots: list[str]) -> str:
        m = self.machine
        libs = ", ".join(f"{k} {v}" for k, v in m["libraries"].items())
        lines = [
            "# uba benchmark report",
            "",
            f"Run {data['started_at']} to {data['generated_at']} ({data['duration_s']:.0f} s), "
            f"`{self.params.get('command', 'bench/suite.py')}`.",
            "",
            f"**Machine**: {m['cores']} cores, {m['cpu_model']}, {m['memory_gb']} GB RAM, "
            f"{m['os']}; Python {m['python']}; SQLite {m['sqlite']}; PostgreSQL {m['postgresql']} "
            f"(local, 127.0.0.1). Libraries: {libs}. Load average at start "
            f"{fmt_load(m.get('load_average_at_start'))}, at end "
            f"{fmt_load(m.get('load_average_at_end'))} (the machine is shared: figures are noisy; "
            "every comparison is interleaved baseline, subject, baseline again, and the median of "
            "the repeats is reported).",
            "",
            f"**Code**: server code as of commit {m.get('code_at_start', {}).get('commit', '?')} "
            f"({m.get('code_at_start', {}).get('subject', '')})"
            + (
                f" with {m['code_at_start']['uncommitted_server_files']} uncommitted file(s) under "
                "server/, proto/, envoy/"
                if m.get("code_at_start", {}).get("uncommitted_server_files")
                else ""
            )
            + ".",
            "",
            f"**Sizes**: {self.params.get('sizes_text', '')}",
            "",
            "Ratios are subject / baseline, both measured in this run (for each repeat against the "
            "mean of the baselines just before and just after it; the median over repeats).",
            "",
            "| Figure | Backend | Subject | Baseline (same run) | Ratio | Target | Met |",
            "|---|---|---|---|---|---|---|",
        ]
        order = {k: i for i, k in enumerate(FIGURES)}
        backend_order = {"sqlite": 0, "postgresql": 1, "any": 2}
        for f in sorted(
            self.figures, key=lambda f: (order[f.key], backend_order.get(f.backend, 3))
        ):
            subject = fmt_value(f.value, f.unit)
            if f.note:
                subject += f" ({f.note})"
            baseline = ""
            if f.baseline:
                baseline = f.baseline + (
                    ": " + fmt_value(f.baseline_value, f.baseline_unit or f.unit)
                    if f.baseline_value is not None
                    else ""
                )
            ratio = "" if f.ratio is None else f"{f.ratio:.2f}"
            met = {True: "yes", False: "**no**", None: "-"}[f.met]
            lines.append(
                f"| {f.title} | {f.backend} | {subject} | {baseline} | {ratio} | {f.target or '-'} "
                f"| {met} |"
            )
        lines.append("")
        for name in plots:
            lines += [f"![{name}]({name})", ""]
        for name, per_backend in self.sections.items():
            text = (
                per_backend.get("any", {}).get("markdown")
                if isinstance(per_backend, dict)
                else None
            )
            parts = [
                (b, v.get("markdown"))
                for b, v in per_backend.items()
                if isinstance(v, dict) and v.get("markdown")
            ]
            if not parts:
                continue
            lines += [f"## {name}", ""]
            for backend, md in parts:
                if backend != "any":
                    lines += [f"### {backend}", ""]
                lines += [md, ""]
            del text
        if self.notes:
            lines += ["## Notes", ""] + [f"- {n}" for n in self.notes] + [""]
        lines += ["Every figure with its runs is in `report.json`.", ""]
        return "\n".join(lines)

    # -- plots ------------------------------------------------------------------------

    def _plots(self) -> list[str]:
        try:
            import matplotlib

            matplotlib.use("Agg")
            import matplotlib.pyplot as plt
        except ImportError:
            self.notes.append("matplotlib is not installed: no plots (pip install matplotlib).")
            return []
        made = []
        for name, fn in (
            ("ratios.png", self._plot_ratios),
            ("throughput.png", self._plot_throughput),
            ("latency.png", self._plot_latency),
            ("growth.png", self._plot_growth),
            ("multicore.png", self._plot_multicore),
            ("users.png", self._plot_users),
        ):
            try:
                fig = fn(plt)
            except Exception as exc:  # noqa: BLE001 - a plot must not lose the report
                self.notes.append(f"plot {name} failed: {type(exc).__name__}: {exc}")
                continue
            if fig is None:
                continue
            fig.tight_layout()
            fig.savefig(self.out / name, dpi=110)
            plt.close(fig)
            made.append(name)
        return made

    def _plot_ratios(self, plt):
        rows = [f for f in self.figures if f.ratio is not None and f.key in RATIO_TARGETS]
        if not rows:
            return None
        rows.sort(key=lambda f: (list(FIGURES).index(f.key), f.backend))
        fig, ax = plt.subplots(figsize=(9, 0.38 * len(rows) + 1.5))
        labels = [f"{f.key} [{f.backend}]" for f in rows]
        colors = [
            "tab:green" if f.met else ("tab:red" if f.met is False else "tab:gray") for f in rows
        ]
        ax.barh(range(len(rows)), [f.ratio for f in rows], color=colors)
        for i, f in enumerate(rows):
            t = RATIO_TARGETS[f.key]
            ax.plot([t, t], [i - 0.4, i + 0.4], color="black", lw=2)
            ax.text(f.ratio, i, f" {f.ratio:.2f}", va="center", fontsize=8)
        ax.set_yticks(range(len(rows)), labels, fontsize=8)
        ax.invert_yaxis()
        ax.set_xlabel("ratio to the baseline measured in the same run (black tick: target)")
        ax.set_title("Ratios against same-run baselines (green: target met, red: not met)")
        return fig

    def _plot_throughput(self, plt):
        keys = [
            ("batch_raw", "raw insert (driver)"),
            ("batch_detection_off", "off"),
            ("batch_detection_basic", "basic"),
            ("batch_detection_enhanced", "enhanced"),
        ]
        backends = [b for b in ("sqlite", "postgresql") if self._get("batch_detection_off", b)]
        if not backends:
            return None
        fig, axes = plt.subplots(1, 2, figsize=(11, 4))
        ax = axes[0]
        width = 0.8 / len(keys)
        for j, (key, label) in enumerate(keys):
            vals = []
            for b in backends:
                if key == "batch_raw":
                    f = self._get("batch_detection_off", b)
                    vals.append(f.baseline_value if f else 0)
                else:
                    f = self._get(key, b)
                    vals.append(f.value if f and f.value else 0)
            ax.bar([i + j * width for i in range(len(backends))], vals, width, label=label)
        ax.axhline(30_000, color="black", ls="--", lw=1)
        ax.axhline(20_000, color="gray", ls=":", lw=1)
        ax.set_xticks([i + 0.3 for i in range(len(backends))], backends)
        ax.set_ylabel("events/s")
        ax.set_yscale("log")
        ax.set_title("Batch ingest (targets on PostgreSQL: 30k off, 20k basic)")
        ax.legend(fontsize=8)
        ax = axes[1]
        labels, vals, colors = [], [], []
        for b in backends:
            for key, label in (
                ("unary_record", "RecordActivity"),
                ("unary_record_detection_off", "detection off"),
                ("subscribers_500", "+500 subscribers"),
            ):
                f = self._get(key, b)
                if f is None:
                    continue
                if key == "unary_record":
                    labels.append(f"{b}\nno-op Check")
                    vals.append(f.baseline_value or 0)
                    colors.append("tab:gray")
                labels.append(f"{b}\n{label}")
                vals.append(f.value or 0)
                colors.append("tab:blue")
        ax.bar(range(len(vals)), vals, color=colors)
        ax.set_xticks(range(len(vals)), labels, fontsize=7, rotation=45, ha="right")
        ax.set_ylabel("calls/s")
        ax.set_title("Unary calls at fixed concurrency")
        return fig

    def _plot_latency(self, plt):
        rows = []
        for b in ("sqlite", "postgresql"):
            for key, label in (
                ("unary_record", "unary RecordActivity"),
                ("alert_latency_idle", "alert, idle"),
                ("alert_latency_under_load", "alert, under load"),
            ):
                f = self._get(key, b)
                if f is None:
                    continue
                d = f.details
                p50 = d.get("p50_ms") if "p50_ms" in d else d.get("subject_p50_ms")
                p99 = d.get("p99_ms") if "p99_ms" in d else d.get("subject_p99_ms")
                if p50 is not None and p99 is not None:
                    rows.append((f"{b}: {label}", p50, p99))
                if key == "unary_record" and d.get("baseline_p50_ms") is not None:
                    rows.append((f"{b}: no-op Check", d["baseline_p50_ms"], d["baseline_p99_ms"]))
        if not rows:
            return None
        fig, ax = plt.subplots(figsize=(11, 0.4 * len(rows) + 1.5))
        y = range(len(rows))
        ax.barh([i - 0.2 for i in y], [r[1] for r in rows], 0.4, label="p50")
        ax.barh([i + 0.2 for i in y], [r[2] for r in rows], 0.4, label="p99")
        ax.axvline(50, color="black", ls="--", lw=1, label="alert p99 target 50 ms")
        ax.set_yticks(list(y), [r[0] for r in rows], fontsize=8)
        ax.invert_yaxis()
        ax.set_xscale("log")
        ax.set_xlabel("milliseconds (log)")
        ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0))
        ax.set_title("Latency")
        return fig

    def _plot_growth(self, plt):
        growth = self.sections.get("Growth", {})
        curves = {
            b: v.get("points") for b, v in growth.items() if isinstance(v, dict) and v.get("points")
        }
        if not curves:
            return None
        fig, axes = plt.subplots(2, 3, figsize=(16, 8))
        panels = [
            (axes[0][0], "ingest_events_per_s", "batch ingest (detection off), events/s"),
            (axes[0][1], "list_ms", "ListLogs first page (100), ms (median)"),
            (axes[0][2], "incidents_ms", "ListIncidents first page (50), ms (median)"),
            (axes[1][0], "dashboard_ms", "GetDashboard (24 h window), ms (median)"),
            (axes[1][1], "db_bytes", "database size, bytes"),
        ]
        axes[1][2].axis("off")
        for ax, field_name, title in panels:
            for backend, points in curves.items():
                if field_name in ("list_ms", "incidents_ms"):
                    variants = sorted({v for p in points for v in p.get(field_name, {})})
                    for variant in variants:
                        xs = [
                            p["events"]
                            for p in points
                            if p.get(field_name, {}).get(variant) is not None
                        ]
                        ys = [
                            p[field_name][variant]
                            for p in points
                            if p.get(field_name, {}).get(variant) is not None
                        ]
                        ax.plot(xs, ys, marker="o", label=f"{backend}, filter {variant}")
                else:
                    xs = [p["events"] for p in points if p.get(field_name)]
                    ys = [p[field_name] for p in points if p.get(field_name)]
                    ax.plot(xs, ys, marker="o", label=backend)
            ax.set_xscale("log")
            ax.set_yscale("log")
            ax.set_xlabel("events stored")
            ax.set_title(title, fontsize=10)
            ax.grid(True, which="both", alpha=0.3)
            ax.legend(fontsize=7)
        return fig

    def _plot_multicore(self, plt):
        rows = [f for f in self.figures if f.key.startswith("multicore_")]
        if not rows:
            return None
        fig, ax = plt.subplots(figsize=(7, 3.5))
        labels, vals, colors = [], [], []
        for f in rows:
            labels += [f"{f.key}\n1 process", f"{f.key}\n2 processes"]
            vals += [f.baseline_value or 0, f.value or 0]
            colors += ["tab:gray", "tab:blue"]
        ax.bar(range(len(vals)), vals, color=colors)
        for i, v in enumerate(vals):
            ax.text(i, v, f"{v:,.0f}", ha="center", va="bottom", fontsize=8)
        ax.set_xticks(range(len(vals)), labels, fontsize=7)
        ax.set_ylabel("events/s")
        ax.set_title("SO_REUSEPORT: 1 vs 2 uba processes on one PostgreSQL (2-core machine)")
        return fig

    def _plot_users(self, plt):
        data = self.sections.get("Users", {}).get("any", {})
        rows, memory = data.get("rows"), data.get("memory")
        if not rows:
            return None
        fig, axes = plt.subplots(1, 3, figsize=(16, 4.2))
        for part, label in (("embedded", "one embedded process (SQLite)"), ("log", "one worker")):
            points = [(r["users"], r[part]) for r in rows if r.get(part)]
            if points:
                axes[0].plot(
                    [u for u, _ in points], [x["per_s"] for _, x in points], marker="o", label=label
                )
                axes[1].plot(
                    [u for u, _ in points],
                    [x["rss_mb"] for _, x in points],
                    marker="o",
                    label=label,
                )
        for ax, title in ((axes[0], "events/s"), (axes[1], "RSS at the end, MB")):
            ax.set_xscale("log")
            ax.set_xlabel("distinct users")
            ax.set_title(title, fontsize=10)
            ax.grid(True, which="both", alpha=0.3)
            ax.legend(fontsize=7)
        for m in memory or []:
            xs = [p["users"] for p in m["points"]]
            axes[2].plot(
                xs,
                [p["rss_mb"] for p in m["points"]],
                marker=".",
                label=f"--cached-users {m['cached_users']:,}",
            )
            axes[2].axvline(m["cached_users"], color="gray", ls=":", lw=1)
        axes[2].set_xlabel("users fed (each: login, MFA, API calls, logout, failure)")
        axes[2].set_title("RSS while the users arrive, MB", fontsize=10)
        axes[2].grid(True, alpha=0.3)
        axes[2].legend(fontsize=7)
        return fig

    def _get(self, key: str, backend: str) -> Figure | None:
        return next((f for f in self.figures if f.key == key and f.backend == backend), None)


# Ratio targets (figure key -> minimum ratio) drawn on the ratios plot.
RATIO_TARGETS = {
    "unary_record": 0.7,
    "unary_record_detection_off": 0.7,
    "subscribers_500": 0.9,
    "rest_record_activity": 0.8,
    "rest_get_dashboard": 0.8,
    "isolation_forest_scoring": 0.8,
}


def fmt_value(value, unit: str) -> str:
    if value is None:
        return "n/a"
    if isinstance(value, float) and (math.isnan(value) or math.isinf(value)):
        return str(value)
    if abs(value) >= 100:
        text = f"{value:,.0f}"
    elif abs(value) >= 10:
        text = f"{value:.1f}"
    else:
        text = f"{value:.3g}"
    return f"{text} {unit}".strip()


def fmt_load(load) -> str:
    return "?" if not load else " / ".join(f"{x:.2f}" for x in load)


def _jsonable(obj):
    if isinstance(obj, (set, tuple)):
        return list(obj)
    if isinstance(obj, Path):
        return str(obj)
    if isinstance(obj, datetime):
        return obj.isoformat()
    return str(obj)


if __name__ == "__main__":
    # Renders report.md and the plots again from a report.json:
    #   .venv/bin/python bench/report.py bench/results/report.json
    Report.load(Path(sys.argv[1] if len(sys.argv) > 1 else "bench/results/report.json")).write()
