"""The real-data protocol's results as text: the Markdown table and one line per row.

Rows are the documents :func:`exoctl.training.real_protocol.run` returns; a figure a row
does not have is shown as "-".
"""

from __future__ import annotations


def _r2(row: dict, model: str, kind: str) -> str:
    v = (row.get(model) or {}).get(f"r2_{kind}")
    return "-" if v is None else f"{v:.3f}"


def _pair(row: dict, model: str) -> str:
    if model not in row:
        return "-"
    s = f"{_r2(row, model, 'hip')} / {_r2(row, model, 'knee')}"
    sd = row[model]
    if "sd_hip" in sd:
        s += f" (sd {sd['sd_hip']:.3f} / {sd.get('sd_knee', 0.0):.3f})"
    return s


def _seeds(row: dict, model: str) -> str:
    return ", ".join(
        f"{_fmt(p.get('r2_hip'))}/{_fmt(p.get('r2_knee'))}" for p in row[model]["seeds"]
    )


def _fmt(v) -> str:
    return "-" if v is None else f"{v:.3f}"


def row_line(row: dict) -> str:
    if row["row"] == "guard":
        return f"guard: {row['n']} cases"
    if "ridge" not in row:
        t = ", ".join(f"{k} Hz: {v['n']} ticks" for k, v in row["ticks"].items())
        return f"{row['row']}: K={row['K']} (VAF {row['vaf']:.1%}); {t}"
    s = f"{row['row']}: ridge {_r2(row, 'ridge', 'hip')}/{_r2(row, 'ridge', 'knee')}"
    s += f"  kinematics {_r2(row, 'kinematics', 'hip')}/{_r2(row, 'kinematics', 'knee')}"
    s += f"  network per seed {_seeds(row, 'network')}"
    if "adapted" in row:
        s += f"  in use after adapt per seed {_seeds(row, 'adapted')}"
        s += "  accepted " + "".join(
            "y" if a["verdict"]["accepted"] else "n" for a in row["adaptation"]
        )
    if "live" in row:
        s += f"  live {_live_r2(row, 'hip')}/{_live_r2(row, 'knee')}"
    return s + f"  (ceiling {_r2(row, 'ceiling', 'hip')}/{_r2(row, 'ceiling', 'knee')})"


def _live_r2(row: dict, kind: str) -> str:
    """The live network's R^2 of a within row, or "-" (other rows, or not run)."""
    return _r2(row["live"], "network", kind) if "live" in row else "-"


def format_table(doc: dict) -> str:
    """The protocol's table in Markdown (R^2 hip / knee against the measured moments): the
    network's mean (sd) over seeds and every seed; "after adapt" is the model in use after
    ``exoctl adapt`` (adapted when the guard accepts, else the unadapted one)."""
    lines = [
        "| row | trained on | scored on | ticks | lagged ridge hip / knee "
        "| kinematics-only hip / knee | network hip / knee, mean (sd) | network per seed "
        "| live network (first seed) hip / knee "
        "| after adapt, mean (sd) | after adapt per seed | guard | ceiling hip / knee |",
        "| --- | --- | --- | ---: | ---: | ---: | ---: | --- | ---: | ---: | --- | --- | ---: |",
    ]
    guard = None
    for r in doc["rows"]:
        if r["row"] == "guard":
            guard = r
            continue
        if "ridge" not in r:
            t = ", ".join(f"{v['n']} at {k} Hz" for k, v in r["ticks"].items())
            lines.append(
                f"| {r['row']} | {r['train']} | - | {t} | K={r['K']}, VAF {r['vaf']:.1%} "
                "| no accuracy claim (one cycle) | | | | | | | |"
            )
            continue
        adapted = "adapted" in r
        verdict = (
            "".join("accept " if a["verdict"]["accepted"] else "refuse " for a in r["adaptation"])
            if adapted
            else "-"
        )
        lines.append(
            f"| {r['row']} | {r['train']} | {r['test']} | {r['scored_ticks']} "
            f"| {_pair(r, 'ridge')} | {_pair(r, 'kinematics')} | {_pair(r, 'network')} "
            f"| {_seeds(r, 'network')} | {_live_r2(r, 'hip')} / {_live_r2(r, 'knee')} "
            f"| {_pair(r, 'adapted')} "
            f"| {_seeds(r, 'adapted') if adapted else '-'} | {verdict.strip()} "
            f"| {_pair(r, 'ceiling')} |"
        )
    if guard is not None:
        lines += [
            "",
            f"Guard over {guard['n']} seeded cases: accepted {guard['accepted']}, false accepts "
            f"{guard['false_accepts']} ({guard['false_accept_rate']:.1%}), false refusals "
            f"{guard['false_refusals']} ({guard['false_refuse_rate']:.1%}).",
        ]
    return "\n".join(lines)
