"""The report of ``instanas bench instance-awareness`` (issues 15 and 20): a Markdown summary and
one figure -- accuracy against measured mean latency per image for InstaNAS, the static front,
the confidence cascades, random routing and (synthetic-difficulty) the level oracle, and the latency
per difficulty level -- each panel
labelled with the method it shows (the paper's exact settings or the named options)."""

from __future__ import annotations

from pathlib import Path

__all__ = [
    "awareness_markdown",
    "awareness_figure",
    "awareness_rows",
    "awareness_target_rows",
    "plot_awareness",
    "SETTING_LABELS",
]

SETTING_LABELS = {
    "options": "named options (INSTANCE_AWARE_OPTIONS)",
    "paper": "paper-exact (Eq. 1-2, self-critical, greedy)",
    "shuffled": "control: named options, controller sees shuffled images",
}


def _f(v, digits: int = 3) -> str:
    if v is None:
        return "n/a"
    if isinstance(v, bool):
        return "yes" if v else "**no**"
    if isinstance(v, float):
        return f"{v:.{digits}f}"
    return str(v)


def _vs(c: dict | None, accuracy: bool = False, interval: bool = True) -> str:
    """One comparison cell: InstaNAS minus the comparator in points (with its 95% interval), after
    the comparator's own accuracy when asked; "n/a" where the comparator has no point there."""
    if not c:
        return "n/a"
    text = f"{c['instanas_minus_pt']:+.1f}"
    if interval:
        text += f" [{c['ci_pt'][0]:+.1f}, {c['ci_pt'][1]:+.1f}]"
    return f"{c['accuracy']:.3f} ({text})" if accuracy else text


def awareness_markdown(result: dict) -> str:
    m = result["machine"]
    lines = [
        "# instance-awareness",
        "",
        "Does the controller route easy and hard images differently, and does that beat fixed children of the same "
        "meta-graph (the static front, which includes the controller's own most used architectures), a confidence "
        "cascade of them and random routing at equal mean latency per image? Test split, deployed (greedy) decoding, "
        "the search's last meta-graph; static front, cascade children and thresholds chosen on the validation split. "
        "Latency: the look-up table calibrated (least squares) on the batch-1 latency measured for every static "
        "child and the controller's most used architectures, plus the controller; the fit's r is listed per run. "
        "Intervals: 95% bootstrap over test images.",
        "",
    ]
    for dataset, d in result["datasets"].items():
        lines += [f"## {dataset} (preset `{d['preset']}`)", ""]
        when = d.get("measured")
        if when:
            load = when.get("load_average")
            lines += [
                f"Measured {when.get('date')}"
                + (f", {when['minutes']:.1f} min" if when.get("minutes") is not None else "")
                + (
                    f"; load average {load:.1f} on {m.get('cpu_count', '?')} cores at the end of the analysis"
                    + (" (other processes ran: measured latencies are noisier)" if load > 1.5 else "")
                    if load is not None
                    else ""
                )
                + ".",
                "",
            ]
        if d["quick_overrides"]:
            lines += [f"`--quick` overrides: `{' '.join(d['quick_overrides'])}`.", ""]
        lines += [f"Targets asked: {d['targets_asked']}.", "", "| target | measured | met |", "|---|---|---|"]
        for name, t in d["targets"].items():
            lines.append(f"| {name} | {_f(t['value'])} | {_f(t.get('met'))} |")
        lines += [
            "",
            "| run | accuracy | mean latency ms | rho(level, latency) | latency per level ms | "
            "architectures (>= 2%) | greedy-sampled gap ms | vs static front pt [CI] | vs cascade-2 pt | "
            "vs cascade-3 pt | vs random routing pt |",
            "|" + "---|" * 11,
        ]
        for setting, r in d["reports"].items():
            last = r["comparisons"][-1]
            levels = r.get("levels", {})
            per = levels.get("mean_latency_per_level", {})

            def vs(key):
                return _vs(last.get(key))

            lines.append(
                f"| {SETTING_LABELS[setting]} | {r['accuracy']:.3f} | {r['latency_ms']:.3f} | "
                f"{_f(levels.get('spearman_rho'))} | {' / '.join(f'{v:.2f}' for v in per.values()) or 'n/a'} | "
                f"{r['distinct_architectures']} ({r['architectures_over_2pct']}) | {r['greedy_sampled_gap_ms']:+.3f} | "
                f"{vs('static front')} | {vs('cascade-2')} | {vs('cascade-3')} | {vs('random routing')} |"
            )
        lines += [
            "",
            "Accuracy at equal mean latency, every controller epoch of each run (InstaNAS minus comparator, points):",
            "",
            "| run | epoch | latency ms | accuracy | static front | cascade-2 | cascade-3 | level oracle |",
            "|---|---|---|---|---|---|---|---|",
        ]
        for setting, r in d["reports"].items():
            for c in r["comparisons"]:
                cells = [
                    _vs(c.get(key), accuracy=True, interval=False)
                    for key in ("static front", "cascade-2", "cascade-3", "level oracle")
                ]
                lines.append(
                    f"| {setting} | {c['model']} | {c['latency_ms']:.3f} | {c['accuracy']:.3f} | "
                    + " | ".join(cells)
                    + " |"
                )
        oracle_rows = [(k, o) for k, r in d["reports"].items() for o in r.get("level_oracle", [])]
        if oracle_rows:
            lines += [
                "",
                "**Level oracle** (a ceiling for routing by difficulty, not a deployable method): each test image's "
                "known difficulty level picks its child, one fixed child per level, chosen on the validation split "
                "for each budget. Its rho says in which direction routing pays on this meta-graph.",
                "",
                "| run's meta-graph | budget ms | latency ms | accuracy | latency per level ms | rho(level, latency) |",
                "|---|---|---|---|---|---|",
            ]
            for setting, o in oracle_rows:
                per = " / ".join(f"{v:.2f}" for v in o["latency_per_level_ms"].values())
                lines.append(
                    f"| {setting} | {o['budget_ms']:.2f} | {o['latency_ms']:.3f} | {o['accuracy']:.3f} | {per} | "
                    f"{o['spearman_rho']:+.2f} |"
                )
        lines += [
            "",
            "Latency calibration per run: "
            + "; ".join(
                f"{k}: r = {r['latency_calibration']['pearson_r']:.3f} over {r['latency_calibration']['timed']} timed "
                f"architectures, controller {r['controller_ms']:.3f} ms"
                for k, r in d["reports"].items()
            )
            + ".",
            "",
        ]
    if result.get("pending"):
        lines += [f"**Not run (the benchmark stopped before them):** {', '.join(result['pending'])}.", ""]
    lines += [
        f"Measured on {m['device_name']} ({m['device']}), torch {m['torch']}, {m['date']}; batch-1 latency, one thread, "
        f"minimum over 2 passes. This invocation took {result['seconds'] / 60:.1f} min.",
        "",
        "Settings: " + "; ".join(f"`{k}`: {' '.join(v) or '(paper defaults)'}" for k, v in result["settings"].items()),
        "",
    ]
    return "\n".join(lines)


def awareness_rows(result: dict) -> list[dict]:
    """One row per controller epoch of every run: accuracy at its measured mean latency and the
    comparators' accuracy at the same latency (InstaNAS minus comparator in points, 95% CI)."""
    rows = []
    for dataset, d in result["datasets"].items():
        for setting, r in d["reports"].items():
            for c in r["comparisons"]:
                row = {
                    "data set": dataset,
                    "run": setting,
                    "controller": c["model"],
                    "latency ms": c["latency_ms"],
                    "accuracy": c["accuracy"],
                }
                for key in ("static front", "cascade-2", "cascade-3", "random routing", "level oracle"):
                    row[key] = _vs(c.get(key), accuracy=True)
                rows.append(row)
    return rows


def awareness_target_rows(result: dict) -> list[dict]:
    """One row per target of issues 15 and 20 and data set: the named options' measured value and
    whether it is met (a missed target is shown, not hidden)."""
    return [
        {
            "data set": dataset,
            "measured": d.get("measured", {}).get("date", ""),
            "target": name,
            "value": t["value"],
            "met": "yes" if t.get("met") else "NO",
        }
        for dataset, d in result["datasets"].items()
        for name, t in d["targets"].items()
    ]


def plot_awareness(result: dict, path: Path) -> Path:
    fig = awareness_figure(result)
    fig.savefig(path, dpi=110)
    import matplotlib.pyplot as plt

    plt.close(fig)
    return path


def awareness_figure(result: dict):
    """Per data set: accuracy against measured mean latency for each run, and latency per level."""
    import matplotlib.pyplot as plt

    datasets = list(result["datasets"])
    settings = ["options", "paper", "shuffled"]
    fig, axes = plt.subplots(
        len(datasets), len(settings) + 1, figsize=(5 * (len(settings) + 1), 4.2 * len(datasets)), squeeze=False
    )
    for row, dataset in enumerate(datasets):
        reports = result["datasets"][dataset]["reports"]
        for col, setting in enumerate(settings):
            ax = axes[row][col]
            r = reports.get(setting)
            if r is None:
                ax.axis("off")
                continue
            cand = r["static_candidates"]
            ax.scatter(
                [c["latency_ms"] for c in cand], [c["accuracy"] for c in cand], s=12, c="0.7", label="fixed children"
            )
            front = sorted((c for c in cand if c["on_front"]), key=lambda c: c["latency_ms"])
            ax.plot(
                [c["latency_ms"] for c in front],
                [c["accuracy"] for c in front],
                "k-o",
                ms=4,
                label="static front (val-picked)",
            )
            curves = (
                (r["cascades"].get("cascade-2", []), "C1--s", "cascade-2"),
                (r["cascades"].get("cascade-3", []), "C2:^", "cascade-3"),
                (r.get("level_oracle", []), "C4-.d", "level oracle (knows difficulty)"),
            )
            for rows, style, label in curves:
                rows = sorted(rows, key=lambda c: c["latency_ms"])
                if rows:
                    ax.plot([c["latency_ms"] for c in rows], [c["accuracy"] for c in rows], style, ms=4, label=label)
            pts = r["points"]
            ax.plot(
                [p["latency_ms"] for p in pts], [p["accuracy"] for p in pts], "C0-*", ms=9, label="InstaNAS (epochs)"
            )
            ax.scatter(
                [r["latency_ms"]], [r["random_routing_accuracy"]], marker="x", s=60, c="C3", label="random routing"
            )
            ax.set_title(f"{dataset}: {SETTING_LABELS[setting]}", fontsize=9)
            ax.set_xlabel("mean latency per image (ms, batch 1; table calibrated on measured)")
            ax.set_ylabel("test accuracy")
            ax.grid(alpha=0.3)
            if col == 0:
                ax.legend(fontsize=7, loc="lower right")
        ax = axes[row][-1]
        for k, setting in enumerate(settings):
            r = reports.get(setting)
            per = (r or {}).get("levels", {}).get("mean_latency_per_level")
            if per:
                levels = [int(v) for v in per]
                ax.bar(
                    [v + (k - 1) * 0.27 for v in levels],
                    list(per.values()),
                    width=0.27,
                    label=f"{setting} (rho {r['levels']['spearman_rho']:.2f})",
                )
        ax.set_title(f"{dataset}: mean routed latency per difficulty level", fontsize=9)
        ax.set_xlabel("difficulty level (0 easy .. 4 hard)")
        ax.set_ylabel("ms")
        if ax.has_data():
            ax.legend(fontsize=7)
        else:
            ax.text(0.5, 0.5, "no difficulty levels in this data set", ha="center", va="center", transform=ax.transAxes)
    fig.tight_layout()
    return fig
