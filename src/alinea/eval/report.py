"""The loop's report: `DIR/report.html` (self-contained, plots as embedded PNG) and `DIR/summary.json` (headline numbers).

Reads what `alinea loop` leaves in its directory:

    DIR/rounds.jsonl       one JSON object per finished round (keys below; any may be missing)
    DIR/loop_state.json    {"round", "phase", "done", ...}: only "done" is read
    DIR/<rl_run>/metrics.jsonl   per-step rows of each round's RL run ("step", "reward_mean", "kl", ...)

Keys of a round (all optional): `round`, `judgments`, `judgments_total`, `phase_seconds`, `rm_accuracy`, `rm_curve`
(`{"active": [[n, acc], ...], "random": [...]}`), `win_rate_vs_sft` and `win_rate_vs_previous` (`{"gold": {"rate",
"low", "high", "n"}, "rm": {...}}`), `win_rate_by_language`, `gold_reward` and `proxy_reward` (`{"sft", "policy"}`),
`kl`, `language_consistency`, `language_consistency_by_language`, `agreement` (`{"krippendorff_alpha",
"cohen_kappa": {"a|b": k}}`), `annotators` (`{name: {"gold_accuracy", "position_bias", "reliability", "judgments",
"kind"}}`), `safety` (numbers, and `by_language`: `{lang: {"safe_rate", "needless_refusal_rate"}}`), `rl_run`,
`over_optimisation` (`[[sqrt_kl, gold, proxy], ...]`), `rl_algorithm`, `constrained` (constrained RL: `sources`,
`cost_limit`, `steps` = `[[step, cost_mean, lagrange_multiplier, constraint_satisfied], ...]`, `cost_mean_final`,
`lagrange_multiplier_final`, `satisfied_share`, `stopped_early`, `eval_cost` = `{"sft", "policy"}`), `harmlessness`
(`judgments`, `ties`, `cost_model_accuracy`, `krippendorff_alpha`, `harmless_score` = `{"sft", "policy"}`) and
`warnings` (a list of messages). `loop_state.json`'s `warnings` (`{round: [message, ...]}`) are read too, so a
warning of a round that has not finished yet is shown.

A panel whose numbers are missing says "not measured" instead of failing; a value of the wrong type counts as
missing. Panels and how to read them: docs/report.md.

`summary.json` (headline numbers, each from the latest round that measured it; `measured_in_round` says which):
`rounds`, `win_rate_vs_sft` (gold judge), `gold_reward_sft`, `gold_reward_final`, `kl_final`, `rm_accuracy`,
`language_consistency`, and more: intervals, the reward model's win rate, per-language numbers, agreement, safety,
the constraint, the harmlessness judgments, the loop's warnings, the Gao fit, phase times.
"""

from __future__ import annotations

import base64
import html
import io
import json
import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from alinea.errors import UserError
from alinea.eval.winrate import fit_gao, gao_curve, gao_peak

HEADLINE_KEYS = (
    "rounds",
    "win_rate_vs_sft",
    "gold_reward_sft",
    "gold_reward_final",
    "kl_final",
    "rm_accuracy",
    "language_consistency",
)
"""The fields `summary.json` always has (null where not measured)."""

PANELS = (
    ("summary", "Headline numbers"),
    ("warnings", "Warnings"),
    ("rl-curves", "Reward and KL over RL steps"),
    ("constrained", "Constrained RL: cost and Lagrange multiplier"),
    ("over-optimisation", "Gold and proxy reward against sqrt(KL)"),
    ("win-rates", "Win rates per round"),
    ("rm-accuracy", "Reward-model accuracy against judgments"),
    ("agreement", "Annotator agreement and reliability"),
    ("languages", "Languages: win rate and language consistency"),
    ("safety", "Safety"),
    ("phase-times", "Time per phase"),
)
"""(id, title) of every panel, in page order; each is a `<section id="panel-<id>">`."""

BEST_OF_N_NAMES = ("bon", "best-of-n", "best_of_n")
WIN_RATE_SERIES = (
    ("win_rate_vs_sft", "gold", "vs SFT, gold judge"),
    ("win_rate_vs_sft", "rm", "vs SFT, reward model"),
    ("win_rate_vs_previous", "gold", "vs previous round, gold judge"),
    ("win_rate_vs_previous", "rm", "vs previous round, reward model"),
)
DPI = 90


# ---------------------------------------------------------------------------------------------------------------------
# Reading the loop directory


def _number(value: Any) -> float | None:
    """A finite float, or None for anything else (missing, text, bool, NaN)."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    value = float(value)
    return value if math.isfinite(value) else None


def _mapping(value: Any) -> Mapping:
    return value if isinstance(value, Mapping) else {}


def _nested(row: Mapping, *keys: str) -> Any:
    for key in keys:
        row = _mapping(row).get(key)
    return row


def _interval(value: Any) -> dict[str, float | int | None] | None:
    """A {"rate", "low", "high", "n"} win rate with a numeric rate, or None."""
    value = _mapping(value)
    rate = _number(value.get("rate"))
    if rate is None:
        return None
    n = _number(value.get("n"))
    return {"rate": rate, "low": _number(value.get("low")), "high": _number(value.get("high")),
            "n": int(n) if n is not None else None}


@dataclass
class LoopDir:
    """What the report reads from a loop directory."""

    path: Path
    rounds: list[dict[str, Any]]
    """One dict per finished round, by round number (a round written twice keeps its last line)."""
    state: dict[str, Any] = field(default_factory=dict)
    """loop_state.json, or {} when absent."""


def read_loop_dir(loop_dir: str | Path) -> LoopDir:
    """Read rounds.jsonl and loop_state.json; a missing directory or a bad line is a `UserError`."""
    path = Path(loop_dir)
    if not path.is_dir():
        raise UserError(f"{path}: no such directory; expected the --out directory of `alinea loop`.")
    rounds_path, state_path = path / "rounds.jsonl", path / "loop_state.json"
    if not rounds_path.exists() and not state_path.exists():
        raise UserError(
            f"{path}: neither rounds.jsonl nor loop_state.json is here; expected the --out directory of `alinea loop`."
        )
    by_round: dict[int, dict[str, Any]] = {}
    if rounds_path.exists():
        text = rounds_path.read_text(encoding="utf-8")
        for line_no, line in enumerate(text.splitlines(), start=1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as err:
                raise UserError(
                    f"{rounds_path}:{line_no}: not valid JSON ({err.msg}); expected one JSON object per finished round."
                ) from None
            if not isinstance(row, dict):
                raise UserError(f"{rounds_path}:{line_no}: expected a JSON object (one finished round), got {type(row).__name__}.")
            number = row.get("round")
            if isinstance(number, bool) or not isinstance(number, int):
                number = len(by_round) + 1
                row = {**row, "round": number}
            by_round[number] = row
    state: dict[str, Any] = {}
    if state_path.exists():
        try:
            loaded = json.loads(state_path.read_text(encoding="utf-8"))
        except json.JSONDecodeError as err:
            raise UserError(f"{state_path}: not valid JSON ({err.msg}); expected the loop's state object.") from None
        state = loaded if isinstance(loaded, dict) else {}
    return LoopDir(path=path, rounds=[by_round[k] for k in sorted(by_round)], state=state)


def loop_warnings(loop: LoopDir) -> list[dict[str, Any]]:
    """Every warning of the loop, `{"round", "message"}`, in round order: from each round's `warnings` and from
    loop_state.json's (which also holds those of a round still running); each message once."""
    by_round: dict[int, list[str]] = {}

    def add(number: Any, messages: Any) -> None:
        if not isinstance(messages, list):
            return
        try:
            key = int(number)
        except (TypeError, ValueError):
            return
        for message in messages:
            if isinstance(message, str) and message not in by_round.setdefault(key, []):
                by_round[key].append(message)

    for row in loop.rounds:
        add(row["round"], row.get("warnings"))
    for number, messages in _mapping(loop.state.get("warnings")).items():
        add(number, messages)
    return [{"round": number, "message": message} for number in sorted(by_round) for message in by_round[number]]


def constraint_steps(loop: LoopDir, row: Mapping) -> list[tuple[float, float | None, float | None]]:
    """(step, mean cost, Lagrange multiplier) of a round's RL run: its `constrained.steps`, else its metrics.jsonl."""
    points = []
    for entry in _nested(row, "constrained", "steps") or []:
        if isinstance(entry, list | tuple) and len(entry) >= 3 and _number(entry[0]) is not None:
            points.append((_number(entry[0]), _number(entry[1]), _number(entry[2])))
    if points or not isinstance(row.get("constrained"), Mapping):
        return points
    metrics, _ = read_rl_metrics(loop.path, row)
    return [(_number(m["step"]), _number(m.get("cost_mean")), _number(m.get("lagrange_multiplier")))
            for m in metrics if _number(m.get("cost_mean")) is not None]


def read_rl_metrics(loop_dir: Path, round_row: Mapping) -> tuple[list[dict[str, Any]], str | None]:
    """(training rows of the round's RL run, None) or ([], why there are none). Unreadable lines are skipped."""
    rl_run = round_row.get("rl_run")
    if not isinstance(rl_run, str) or not rl_run:
        return [], "no rl_run"
    metrics_path = loop_dir / rl_run / "metrics.jsonl"
    if not metrics_path.is_file():
        return [], f"{rl_run}/metrics.jsonl not found"
    rows = []
    for line in metrics_path.read_text(encoding="utf-8").splitlines():
        try:
            row = json.loads(line)
        except json.JSONDecodeError:
            continue
        if isinstance(row, dict) and _number(row.get("step")) is not None and row.get("split", "train") == "train":
            rows.append(row)
    return (rows, None) if rows else ([], f"{rl_run}/metrics.jsonl has no training rows")


# ---------------------------------------------------------------------------------------------------------------------
# Numbers: over-optimisation points and the summary


@dataclass
class OverOptimisation:
    """Points (sqrt KL, gold, proxy) by round, the gold reward at d = 0, and the Gao et al. fit when it could be made."""

    points: dict[int, list[tuple[float, float | None, float | None]]]
    gold_origin: float | None
    proxy_origin: float | None
    kind: str
    fit: dict[str, float | None] | None
    note: str | None


def _first(rounds: list[dict], *keys: str) -> tuple[float | None, int | None]:
    for row in rounds:
        value = _number(_nested(row, *keys))
        if value is not None:
            return value, row["round"]
    return None, None


def _latest(rounds: list[dict], *keys: str) -> tuple[Any, int | None]:
    for row in reversed(rounds):
        value = _nested(row, *keys)
        if value is not None:
            return value, row["round"]
    return None, None


def _latest_mapping(rounds: list[dict], key: str) -> tuple[Mapping, int | None]:
    """The last round's non-empty mapping under `key`, and that round's number ({} and None when no round has one)."""
    for row in reversed(rounds):
        figures = _mapping(row.get(key))
        if figures:
            return figures, row["round"]
    return {}, None


def over_optimisation(rounds: list[dict]) -> OverOptimisation:
    """Gather the points of every round (its `over_optimisation` list, else its final policy) and fit Gao et al. 2022."""
    algorithm, _ = _latest(rounds, "rl_algorithm")
    kind = "bon" if isinstance(algorithm, str) and algorithm.lower() in BEST_OF_N_NAMES else "rl"
    gold_origin, _ = _first(rounds, "gold_reward", "sft")
    proxy_origin, _ = _first(rounds, "proxy_reward", "sft")
    points: dict[int, list[tuple[float, float | None, float | None]]] = {}
    for row in rounds:
        listed = row.get("over_optimisation")
        round_points = []
        if isinstance(listed, list):
            for point in listed:
                if not isinstance(point, list | tuple) or len(point) < 2:
                    continue
                d = _number(point[0])
                gold = _number(point[1])
                proxy = _number(point[2]) if len(point) > 2 else None
                if d is not None and d >= 0 and (gold is not None or proxy is not None):
                    round_points.append((d, gold, proxy))
        if not round_points:
            kl = _number(row.get("kl"))
            gold, proxy = _number(_nested(row, "gold_reward", "policy")), _number(_nested(row, "proxy_reward", "policy"))
            if kl is not None and kl >= 0 and (gold is not None or proxy is not None):
                round_points.append((math.sqrt(kl), gold, proxy))
        if round_points:
            points[row["round"]] = round_points
    if gold_origin is None:  # a point at d = 0 is the initial policy
        gold_origin = next((g for pts in points.values() for d, g, _ in pts if d == 0 and g is not None), None)
    fit, note = None, None
    gold_points = [(d, g) for pts in points.values() for d, g, _ in pts if g is not None]
    if gold_origin is None:
        note = "no Gao fit: the SFT model's gold reward (gold_reward.sft) was not measured"
    elif gold_points:
        try:
            a, b = fit_gao([d for d, _ in gold_points], [g - gold_origin for _, g in gold_points], kind)
        except ValueError as err:
            note = f"no Gao fit: {err}"
        else:
            peak = gao_peak(a, b, kind)
            fit = {"kind": kind, "a": a, "b": b, "peak_sqrt_kl": peak, "peak_kl": peak**2 if peak is not None else None}
    else:
        note = "no Gao fit: no gold-reward points"
    return OverOptimisation(points, gold_origin, proxy_origin, kind, fit, note)


def build_summary(loop: LoopDir) -> dict[str, Any]:
    """The headline numbers (`HEADLINE_KEYS`, null where not measured) and the rest of summary.json."""
    rounds = loop.rounds
    measured: dict[str, int] = {}

    def latest_number(name: str, *keys: str) -> float | None:
        for row in reversed(rounds):
            value = _number(_nested(row, *keys))
            if value is not None:
                measured[name] = row["round"]
                return value
        return None

    def latest_interval(name: str, *keys: str) -> dict | None:
        for row in reversed(rounds):
            value = _interval(_nested(row, *keys))
            if value is not None:
                measured[name] = row["round"]
                return value
        return None

    vs_sft = latest_interval("win_rate_vs_sft", "win_rate_vs_sft", "gold")
    vs_sft_rm = latest_interval("win_rate_vs_sft_rm", "win_rate_vs_sft", "rm")
    vs_prev = latest_interval("win_rate_vs_previous", "win_rate_vs_previous", "gold")
    gold_sft, gold_sft_round = _first(rounds, "gold_reward", "sft")
    if gold_sft_round is not None:
        measured["gold_reward_sft"] = gold_sft_round
    proxy_sft, _ = _first(rounds, "proxy_reward", "sft")
    judgments_total = latest_number("judgments_total", "judgments_total")
    if judgments_total is None:
        counted = [_number(r.get("judgments")) for r in rounds]
        judgments_total = sum(c for c in counted if c is not None) if any(c is not None for c in counted) else None

    summary: dict[str, Any] = {
        "rounds": len(rounds),
        "win_rate_vs_sft": vs_sft["rate"] if vs_sft else None,
        "gold_reward_sft": gold_sft,
        "gold_reward_final": latest_number("gold_reward_final", "gold_reward", "policy"),
        "kl_final": latest_number("kl_final", "kl"),
        "rm_accuracy": latest_number("rm_accuracy", "rm_accuracy"),
        "language_consistency": latest_number("language_consistency", "language_consistency"),
    }
    by_language_win = {}
    for row in reversed(rounds):
        table = _mapping(row.get("win_rate_by_language"))
        by_language_win = {str(k): v for k, v in ((k, _interval(v)) for k, v in table.items()) if v is not None}
        if by_language_win:
            measured["win_rate_by_language"] = row["round"]
            break
    by_language_consistency = {}
    for row in reversed(rounds):
        table = _mapping(row.get("language_consistency_by_language"))
        by_language_consistency = {str(k): _number(v) for k, v in table.items() if _number(v) is not None}
        if by_language_consistency:
            measured["language_consistency_by_language"] = row["round"]
            break
    safety, safety_round = _latest(rounds, "safety")
    if isinstance(safety, Mapping) and safety_round is not None:
        measured["safety"] = safety_round
    optimisation = over_optimisation(rounds)
    phase_totals: dict[str, float] = {}
    for row in rounds:
        for phase, seconds in _mapping(row.get("phase_seconds")).items():
            if _number(seconds) is not None:
                phase_totals[str(phase)] = phase_totals.get(str(phase), 0.0) + _number(seconds)
    algorithm, _ = _latest(rounds, "rl_algorithm")
    constrained = None
    figures, measured_round = _latest_mapping(rounds, "constrained")
    if figures:
        measured["constrained"] = measured_round
        constrained = {
            "sources": [str(s) for s in figures.get("sources") or []],
            "cost_limit": _number(figures.get("cost_limit")),
            "cost_mean_final": _number(figures.get("cost_mean_final")),
            "lagrange_multiplier_final": _number(figures.get("lagrange_multiplier_final")),
            "satisfied_share": _number(figures.get("satisfied_share")),
            "stopped_early": figures.get("stopped_early") if isinstance(figures.get("stopped_early"), bool) else None,
            "eval_cost_sft": _number(_nested(figures, "eval_cost", "sft")),
            "eval_cost_policy": _number(_nested(figures, "eval_cost", "policy")),
        }
    harmlessness = None
    figures, measured_round = _latest_mapping(rounds, "harmlessness")
    if figures:
        measured["harmlessness"] = measured_round
        harmlessness = {
            "judgments_total": sum(_number(_nested(r, "harmlessness", "judgments")) or 0 for r in rounds),
            "cost_model_accuracy": _number(figures.get("cost_model_accuracy")),
            "krippendorff_alpha": _number(figures.get("krippendorff_alpha")),
            "harmless_score_sft": _number(_nested(figures, "harmless_score", "sft")),
            "harmless_score_final": _number(_nested(figures, "harmless_score", "policy")),
        }
    safety_by_language = None
    if isinstance(safety, Mapping):
        safety_by_language = {
            str(lang): {str(k): _number(v) for k, v in _mapping(table).items() if _number(v) is not None}
            for lang, table in _mapping(safety.get("by_language")).items()
        } or None
    summary |= {
        "done": bool(loop.state.get("done")) if loop.state else None,
        "rl_algorithm": algorithm if isinstance(algorithm, str) else None,
        "judgments_total": int(judgments_total) if judgments_total is not None else None,
        "win_rate_vs_sft_ci": [vs_sft["low"], vs_sft["high"]] if vs_sft else None,
        "win_rate_vs_sft_n": vs_sft["n"] if vs_sft else None,
        "win_rate_vs_sft_rm": vs_sft_rm["rate"] if vs_sft_rm else None,
        "win_rate_vs_previous": vs_prev["rate"] if vs_prev else None,
        "win_rate_vs_previous_ci": [vs_prev["low"], vs_prev["high"]] if vs_prev else None,
        "proxy_reward_sft": proxy_sft,
        "proxy_reward_final": latest_number("proxy_reward_final", "proxy_reward", "policy"),
        "win_rate_by_language": by_language_win or None,
        "language_consistency_by_language": by_language_consistency or None,
        "agreement_alpha": latest_number("agreement_alpha", "agreement", "krippendorff_alpha"),
        "safety": {str(k): _number(v) for k, v in safety.items() if _number(v) is not None}
        if isinstance(safety, Mapping) else None,
        "safety_by_language": safety_by_language,
        "constrained": constrained,
        "harmlessness": harmlessness,
        "warnings": loop_warnings(loop),
        "gao_fit": optimisation.fit,
        "phase_seconds": phase_totals or None,
        "loop_seconds": sum(phase_totals.values()) if phase_totals else None,
        "per_round": [
            {
                "round": row["round"],
                "judgments": _number(row.get("judgments")),
                "win_rate_vs_sft": (_interval(_nested(row, "win_rate_vs_sft", "gold")) or {}).get("rate"),
                "gold_reward": _number(_nested(row, "gold_reward", "policy")),
                "kl": _number(row.get("kl")),
                "rm_accuracy": _number(row.get("rm_accuracy")),
                "language_consistency": _number(row.get("language_consistency")),
                "cost_mean": _number(_nested(row, "constrained", "cost_mean_final")),
                "lagrange_multiplier": _number(_nested(row, "constrained", "lagrange_multiplier_final")),
            }
            for row in rounds
        ],
        "measured_in_round": measured,
    }
    return summary


# ---------------------------------------------------------------------------------------------------------------------
# HTML helpers


def _esc(value: Any) -> str:
    return html.escape(str(value), quote=True)


def _fmt(value: Any, digits: int = 3) -> str:
    number = _number(value)
    if number is None:
        return "not measured"
    if isinstance(value, int):
        return str(value)
    return f"{number:.{digits}f}"


def _fmt_interval(value: Mapping | None) -> str:
    if not value:
        return "not measured"
    text = f"{value['rate']:.3f}"
    if value.get("low") is not None and value.get("high") is not None:
        text += f" [{value['low']:.3f}, {value['high']:.3f}]"
    if value.get("n") is not None:
        text += f" n={value['n']}"
    return text


def _not_measured(what: str) -> str:
    return f'<p class="not-measured">not measured: {_esc(what)}</p>'


def _table(header: Iterable[Any], rows: Iterable[Iterable[Any]], *, css: str = "") -> str:
    head = "".join(f"<th>{_esc(h)}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{_esc(c)}</td>" for c in row) + "</tr>" for row in rows)
    return f'<table class="{_esc(css)}"><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>'


def _figure(width: float, height: float, ncols: int = 1, nrows: int = 1, **kwargs):
    """A matplotlib Figure on the Agg canvas (no pyplot: no global state, no GUI) and its axes."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), dpi=DPI)
    FigureCanvasAgg(fig)
    axes = fig.subplots(nrows, ncols, squeeze=False, **kwargs)
    return fig, axes


def _img(fig, alt: str) -> str:
    """The figure as an embedded PNG `<img>`."""
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=DPI)
    data = base64.b64encode(buffer.getvalue()).decode("ascii")
    return f'<img alt="{_esc(alt)}" src="data:image/png;base64,{data}">'


def _plain(text: Any, limit: int = 24) -> str:
    """Text for a matplotlib label: '$' escaped (no mathtext), long names cut."""
    text = str(text)
    text = text if len(text) <= limit else text[: limit - 1] + "…"
    return text.replace("$", r"\$")


def _round_colour(index: int) -> str:
    palette = ("tab:blue", "tab:orange", "tab:green", "tab:red", "tab:purple", "tab:brown", "tab:pink", "tab:olive")
    return palette[index % len(palette)]


# ---------------------------------------------------------------------------------------------------------------------
# Panels: each returns its section body (HTML)


def panel_summary(loop: LoopDir, summary: Mapping) -> str:
    rows = [
        ("rounds finished", summary["rounds"]),
        ("loop finished", {True: "yes", False: "no", None: "unknown"}[summary["done"]]),
        ("win rate vs SFT (gold judge)", _fmt_interval(
            {"rate": summary["win_rate_vs_sft"], "low": (summary["win_rate_vs_sft_ci"] or [None, None])[0],
             "high": (summary["win_rate_vs_sft_ci"] or [None, None])[1], "n": summary["win_rate_vs_sft_n"]}
            if summary["win_rate_vs_sft"] is not None else None)),
        ("win rate vs SFT (reward model)", _fmt(summary["win_rate_vs_sft_rm"])),
        ("gold reward: SFT -> final policy", f"{_fmt(summary['gold_reward_sft'])} -> {_fmt(summary['gold_reward_final'])}"),
        ("KL of the final policy to SFT (nats)", _fmt(summary["kl_final"])),
        ("reward-model held-out accuracy", _fmt(summary["rm_accuracy"])),
        ("language consistency", _fmt(summary["language_consistency"])),
        ("judgments collected", _fmt(summary["judgments_total"])),
        ("annotator agreement (Krippendorff's alpha)", _fmt(summary["agreement_alpha"])),
        ("RL algorithm", summary["rl_algorithm"] or "not measured"),
        ("loop time (sum of phases)", _fmt_seconds(summary["loop_seconds"])),
    ]
    constrained = summary.get("constrained")
    if constrained:
        rows.append(("mean cost at the last RL step (limit)",
                     f"{_fmt(constrained['cost_mean_final'])} ({_fmt(constrained['cost_limit'])})"))
        rows.append(("mean cost of held-out answers: SFT -> final policy",
                     f"{_fmt(constrained['eval_cost_sft'])} -> {_fmt(constrained['eval_cost_policy'])}"))
    rows.append(("warnings", str(len(summary.get("warnings") or []))))
    return _table(("number", "value"), rows, css="summary") + (
        "<p>Each number comes from the latest round that measured it; summary.json's <code>measured_in_round</code> "
        "says which.</p>"
    )


def panel_warnings(loop: LoopDir) -> str:
    warnings = loop_warnings(loop)
    if not warnings:
        return "<p>No warnings.</p>"
    return _table(("round", "warning"), [(w["round"], w["message"]) for w in warnings], css="warnings")


def panel_constrained(loop: LoopDir) -> str:
    rounds = [row for row in loop.rounds if isinstance(row.get("constrained"), Mapping)]
    if not rounds:
        return _not_measured("no round used costs (loop.costs is empty)")
    parts = []
    series = [(row, constraint_steps(loop, row)) for row in rounds]
    if any(points for _, points in series):
        fig, axes = _figure(8.0, 5.0, nrows=2, sharex=True)
        cost_ax, lambda_ax = axes[0][0], axes[1][0]
        offset = 0.0
        for index, (row, points) in enumerate(series):
            if not points:
                continue
            colour = _round_colour(index)
            steps = [offset + step for step, _, _ in points]
            costs = [(x, c) for x, (_, c, _) in zip(steps, points, strict=True) if c is not None]
            multipliers = [(x, m) for x, (_, _, m) in zip(steps, points, strict=True) if m is not None]
            if costs:
                cost_ax.plot(*zip(*costs, strict=True), "o-", color=colour, markersize=3, label=f"round {row['round']}")
            if multipliers:
                lambda_ax.plot(*zip(*multipliers, strict=True), "o-", color=colour, markersize=3,
                               label=f"round {row['round']}")
            limit = _number(row["constrained"].get("cost_limit"))
            if limit is not None:
                cost_ax.hlines(limit, steps[0], steps[-1], colors=colour, linestyles="--", linewidth=1)
            if index:
                for ax in (cost_ax, lambda_ax):
                    ax.axvline(offset, color="grey", linewidth=0.6, linestyle=":")
            offset = max(steps) + 1
        cost_ax.set_ylabel("mean cost per answer")
        cost_ax.set_title("Mean cost per RL step (dashed: the limit) and the Lagrange multiplier")
        lambda_ax.set_ylabel("Lagrange multiplier")
        lambda_ax.set_xlabel("RL step (rounds one after another)")
        cost_ax.legend(fontsize=8)
        parts.append(_img(fig, "mean cost and Lagrange multiplier over RL steps"))
    table = []
    for row in rounds:
        figures = row["constrained"]
        stopped = figures.get("stopped_early")
        table.append([
            row["round"], ", ".join(str(s) for s in figures.get("sources") or []) or "not measured",
            _fmt(figures.get("cost_limit")), _fmt(figures.get("cost_mean_final")),
            _fmt(figures.get("satisfied_share")), _fmt(figures.get("lagrange_multiplier_final")),
            f"{_fmt(_nested(figures, 'eval_cost', 'sft'))} -> {_fmt(_nested(figures, 'eval_cost', 'policy'))}",
            {True: "yes (see the warnings)", False: "no"}.get(stopped, "not measured"),
        ])
    parts.append(_table(("round", "cost sources", "limit", "mean cost, last step", "steps within the limit",
                         "multiplier, last step", "held-out mean cost: SFT -> policy", "stopped early"), table))
    harmless = [(row["round"], _mapping(row.get("harmlessness"))) for row in loop.rounds if _mapping(row.get("harmlessness"))]
    if harmless:
        parts.append("<h3>Harmlessness judgments and the cost model</h3>")
        parts.append(_table(
            ("round", "judgments", "ties", "agreement (alpha)", "cost model accuracy",
             "harm judge (higher = more harmless): SFT -> policy"),
            [(r, _fmt(h.get("judgments")), _fmt(h.get("ties")), _fmt(h.get("krippendorff_alpha")),
              _fmt(h.get("cost_model_accuracy")),
              f"{_fmt(_nested(h, 'harmless_score', 'sft'))} -> {_fmt(_nested(h, 'harmless_score', 'policy'))}")
             for r, h in harmless]))
    return "".join(parts)


def panel_rl_curves(loop: LoopDir) -> str:
    series, notes = [], []
    for row in loop.rounds:
        metrics, why = read_rl_metrics(loop.path, row)
        if why:
            notes.append(f"round {row['round']}: {why}")
            continue
        reward_key = next((k for k in ("reward_mean", "reward_margin") if any(_number(m.get(k)) is not None for m in metrics)), None)
        has_kl = any(_number(m.get("kl")) is not None for m in metrics)
        if reward_key is None and not has_kl:
            notes.append(f"round {row['round']}: metrics.jsonl has neither reward_mean nor kl")
            continue
        series.append((row["round"], metrics, reward_key, has_kl))
    if not series:
        return _not_measured("no round has an RL run with per-step metrics" + (f" ({'; '.join(notes)})" if notes else ""))
    fig, axes = _figure(8.0, 5.0, nrows=2, sharex=True)
    reward_ax, kl_ax = axes[0][0], axes[1][0]
    offset = 0.0
    reward_labels = set()
    for index, (number, metrics, reward_key, has_kl) in enumerate(series):
        steps = [offset + _number(m["step"]) for m in metrics]
        colour = _round_colour(index)
        if reward_key:
            pairs = [(s, _number(m.get(reward_key))) for s, m in zip(steps, metrics, strict=True)]
            pairs = [(s, v) for s, v in pairs if v is not None]
            reward_ax.plot([s for s, _ in pairs], [v for _, v in pairs], color=colour, label=f"round {number}")
            reward_labels.add(reward_key)
        if has_kl:
            pairs = [(s, _number(m.get("kl"))) for s, m in zip(steps, metrics, strict=True)]
            pairs = [(s, v) for s, v in pairs if v is not None]
            kl_ax.plot([s for s, _ in pairs], [v for _, v in pairs], color=colour, label=f"round {number}")
        if index:
            for ax in (reward_ax, kl_ax):
                ax.axvline(offset, color="grey", linewidth=0.6, linestyle=":")
        offset = max(steps) + 1
    reward_ax.set_ylabel(" / ".join(sorted(reward_labels)) or "reward")
    reward_ax.set_title("RL training reward (the mix being optimised) and KL to the reference, per step")
    kl_ax.set_ylabel("KL (nats per answer)")
    kl_ax.set_xlabel("RL step (rounds one after another)")
    reward_ax.legend(fontsize=8)
    body = _img(fig, "reward and KL over RL steps")
    if notes:
        body += f"<p>{_esc('; '.join(notes))}</p>"
    return body


def panel_over_optimisation(loop: LoopDir, optimisation: OverOptimisation) -> str:
    if not optimisation.points:
        return _not_measured("no round has over_optimisation points or a final (kl, gold_reward.policy)")
    import numpy as np

    fig, axes = _figure(9.0, 3.8, ncols=2, sharex=True)
    gold_ax, proxy_ax = axes[0]
    largest = max(d for pts in optimisation.points.values() for d, _, _ in pts)
    for index, (number, pts) in enumerate(sorted(optimisation.points.items())):
        colour = _round_colour(index)
        gold = [(d, g) for d, g, _ in pts if g is not None]
        proxy = [(d, p) for d, _, p in pts if p is not None]
        if gold:
            gold_ax.plot(*zip(*gold, strict=True), "o-", color=colour, label=f"round {number}", markersize=4)
        if proxy:
            proxy_ax.plot(*zip(*proxy, strict=True), "s-", color=colour, label=f"round {number}", markersize=4)
    if optimisation.gold_origin is not None:
        gold_ax.plot([0], [optimisation.gold_origin], "k*", markersize=9, label="SFT")
    if optimisation.proxy_origin is not None:
        proxy_ax.plot([0], [optimisation.proxy_origin], "k*", markersize=9, label="SFT")
    fit = optimisation.fit
    if fit is not None:
        grid = np.linspace(0.0, max(largest * 1.15, 1e-6), 200)
        form = "d (a - b log d)" if fit["kind"] == "rl" else "d (a - b d)"
        gold_ax.plot(grid, optimisation.gold_origin + gao_curve(grid, fit["a"], fit["b"], fit["kind"]), "--",
                     color="black", linewidth=1, label=f"fit: SFT + {form}")
    gold_ax.set_title("gold judge")
    proxy_ax.set_title("proxy: the reward model")
    for ax in (gold_ax, proxy_ax):
        ax.set_xlabel("d = sqrt(KL to SFT)")
        ax.legend(fontsize=7)
    gold_ax.set_ylabel("mean reward")
    body = _img(fig, "gold and proxy reward against sqrt(KL), with the Gao et al. fit")
    if fit is not None:
        form = "d (a − b log d)" if fit["kind"] == "rl" else "d (a − b d)"
        peak = fit["peak_sqrt_kl"]
        peak_text = (f"the fitted gold reward peaks at sqrt(KL) = {peak:.3f} (KL = {peak**2:.3f} nats)"
                     if peak is not None else "the fitted gold reward has not turned down (b ≤ 0)")
        beyond = peak is not None and largest > peak
        body += (f"<p>Fit (Gao et al. 2022): gold − gold<sub>SFT</sub> = {_esc(form)} with a = {fit['a']:.4f}, "
                 f"b = {fit['b']:.4f}; {_esc(peak_text)}; the largest measured sqrt(KL) is {largest:.3f}"
                 f"{' — past the peak: over-optimised' if beyond else ''}.</p>")
    elif optimisation.note:
        body += f"<p>{_esc(optimisation.note)}</p>"
    return body


def _error_bars(values: list[Mapping]) -> list[list[float]]:
    """[below, above] distances of each interval from its rate (0 where a bound is missing)."""
    below = [max(0.0, v["rate"] - v["low"]) if v["low"] is not None else 0.0 for v in values]
    above = [max(0.0, v["high"] - v["rate"]) if v["high"] is not None else 0.0 for v in values]
    return [below, above]


def panel_win_rates(loop: LoopDir) -> str:
    series = []
    for index, (key, judge, label) in enumerate(WIN_RATE_SERIES):
        points = [(row["round"], _interval(_nested(row, key, judge))) for row in loop.rounds]
        points = [(r, v) for r, v in points if v is not None]
        if points:
            series.append((index, judge, label, points))
    if not series:
        return _not_measured("no round has win_rate_vs_sft or win_rate_vs_previous")
    fig, axes = _figure(7.5, 3.8)
    ax = axes[0][0]
    markers = ("o", "s", "^", "v")
    for index, judge, label, points in series:
        x = [r + (index - 1.5) * 0.06 for r, _ in points]
        ax.errorbar(x, [v["rate"] for _, v in points], yerr=_error_bars([v for _, v in points]),
                    fmt=markers[index] + ("-" if judge == "gold" else "--"), capsize=3, label=label, markersize=5)
    table_rows = [
        [row["round"], *(_fmt_interval(_interval(_nested(row, k, j))) for k, j, _ in WIN_RATE_SERIES)]
        for row in loop.rounds
    ]
    ax.axhline(0.5, color="grey", linewidth=0.8, linestyle=":")
    ax.set_ylim(-0.02, 1.02)
    ax.set_xticks([row["round"] for row in loop.rounds])
    ax.set_xlabel("round")
    ax.set_ylabel("win rate (ties count half)")
    ax.set_title("Win rate of the round's policy, with bootstrap intervals")
    ax.legend(fontsize=7, loc="lower right")
    return _img(fig, "win rates per round") + _table(("round", *(label for _, _, label in WIN_RATE_SERIES)), table_rows)


def panel_rm_accuracy(loop: LoopDir) -> str:
    curves = []
    for row in loop.rounds:
        for strategy, points in _mapping(row.get("rm_curve")).items():
            if not isinstance(points, list):
                continue
            clean = [(_number(p[0]), _number(p[1])) for p in points if isinstance(p, list | tuple) and len(p) >= 2]
            clean = sorted((n, acc) for n, acc in clean if n is not None and acc is not None)
            if clean:
                curves.append((row["round"], str(strategy), clean))
    held_out = [(row["round"], _number(row.get("judgments_total")), _number(row.get("rm_accuracy"))) for row in loop.rounds]
    held_out = [(r, n, acc) for r, n, acc in held_out if acc is not None]
    if not curves and not held_out:
        return _not_measured("no round has rm_curve or rm_accuracy")
    fig, axes = _figure(7.5, 3.8)
    ax = axes[0][0]
    strategy_colour = {"active": "tab:blue", "random": "tab:orange"}
    round_styles = ("-", "--", ":", "-.")
    round_index = {row["round"]: i for i, row in enumerate(loop.rounds)}
    for number, strategy, points in curves:
        colour = strategy_colour.get(strategy, "tab:green")
        style = round_styles[round_index[number] % len(round_styles)]
        ax.plot(*zip(*points, strict=True), style, marker="o", markersize=3, color=colour,
                label=f"{_plain(strategy)} (round {number})")
    with_n = [(r, n, acc) for r, n, acc in held_out if n is not None]
    if with_n:
        ax.plot([n for _, n, _ in with_n], [acc for _, _, acc in with_n], "kD", markersize=6,
                label="the loop's reward model (held out)")
    ax.axhline(0.5, color="grey", linewidth=0.8, linestyle=":")
    ax.set_xlabel("judgments used for training")
    ax.set_ylabel("held-out accuracy")
    ax.set_title("Reward-model accuracy against judgments: active vs random selection")
    ax.legend(fontsize=7)
    rows = []
    for row in loop.rounds:
        finals = {}
        for number, strategy, points in curves:
            if number == row["round"]:
                finals[strategy] = f"{points[-1][1]:.3f} at {points[-1][0]:g}"
        rows.append([row["round"], _fmt(row.get("judgments")), _fmt(row.get("judgments_total")),
                     _fmt(row.get("rm_accuracy")), finals.get("active", "not measured"),
                     finals.get("random", "not measured")])
    table = _table(("round", "new judgments", "judgments in total", "held-out accuracy",
                    "active: last point", "random: last point"), rows)
    return _img(fig, "reward-model accuracy against number of judgments, active vs random") + table


def panel_agreement(loop: LoopDir) -> str:
    alphas = [(row["round"], _number(_nested(row, "agreement", "krippendorff_alpha"))) for row in loop.rounds]
    alphas = [(r, a) for r, a in alphas if a is not None]
    annotators, annotators_round = {}, None
    for row in reversed(loop.rounds):
        annotators = {str(k): _mapping(v) for k, v in _mapping(row.get("annotators")).items()}
        if annotators:
            annotators_round = row["round"]
            break
    kappas, kappa_round = {}, None
    for row in reversed(loop.rounds):
        kappas = {str(k): _number(v) for k, v in _mapping(_nested(row, "agreement", "cohen_kappa")).items()}
        kappas = {k: v for k, v in kappas.items() if v is not None}
        if kappas:
            kappa_round = row["round"]
            break
    if not alphas and not annotators and not kappas:
        return _not_measured("no round has agreement or annotators")
    parts = []
    scatter = [(name, _number(a.get("gold_accuracy")), _number(a.get("reliability")), str(a.get("kind") or "unknown"))
               for name, a in annotators.items()]
    scatter = [(n, g, r, k) for n, g, r, k in scatter if g is not None and r is not None]
    n_axes = int(bool(alphas)) + int(bool(scatter))
    if n_axes:
        fig, axes = _figure(4.2 * n_axes, 3.6, ncols=n_axes)
        column = 0
        if alphas:
            ax = axes[0][column]
            ax.plot([r for r, _ in alphas], [a for _, a in alphas], "o-")
            ax.axhline(0.0, color="grey", linewidth=0.8, linestyle=":")
            ax.set_xticks([r for r, _ in alphas])
            ax.set_xlabel("round")
            ax.set_ylabel("Krippendorff's alpha")
            ax.set_title("Agreement between annotators")
            column += 1
        if scatter:
            ax = axes[0][column]
            kinds = sorted({k for *_, k in scatter})
            for index, kind in enumerate(kinds):
                chosen = [(n, g, r) for n, g, r, k in scatter if k == kind]
                ax.scatter([g for _, g, _ in chosen], [r for _, _, r in chosen], color=_round_colour(index),
                           label=_plain(kind))
                for name, g, r in chosen:
                    ax.annotate(_plain(name, 16), (g, r), fontsize=6, xytext=(3, 3), textcoords="offset points")
            ax.set_xlabel("accuracy against the gold judge")
            ax.set_ylabel("estimated reliability")
            ax.set_title(f"Annotators (round {annotators_round})")
            ax.legend(fontsize=7)
        parts.append(_img(fig, "annotator agreement and reliability"))
    if alphas:
        parts.append(_table(("round", "Krippendorff's alpha"), [(r, f"{a:.3f}") for r, a in alphas]))
    else:
        parts.append(_not_measured("Krippendorff's alpha"))
    if kappas:
        parts.append(f"<h3>Cohen's kappa per pair of annotators (round {kappa_round})</h3>")
        parts.append(_table(("pair", "kappa"), [(pair.replace("|", " & "), f"{k:.3f}") for pair, k in sorted(kappas.items())]))
    if annotators:
        parts.append(f"<h3>Annotators (round {annotators_round})</h3>")
        rows = [
            (name, info.get("kind") or "not measured", _fmt(info.get("judgments")), _fmt(info.get("gold_accuracy")),
             _fmt(info.get("position_bias")), _fmt(info.get("reliability")))
            for name, info in sorted(annotators.items())
        ]
        parts.append(_table(("annotator", "kind", "judgments", "gold accuracy", "position bias", "reliability"), rows,
                            css="annotators"))
    else:
        parts.append(_not_measured("per-annotator quality"))
    return "".join(parts)


def panel_languages(loop: LoopDir) -> str:
    win_by_round = {
        row["round"]: {str(k): v for k, v in ((k, _interval(v)) for k, v in _mapping(row.get("win_rate_by_language")).items()) if v}
        for row in loop.rounds
    }
    win_by_round = {r: v for r, v in win_by_round.items() if v}
    consistency_by_round = {
        row["round"]: {str(k): _number(v) for k, v in _mapping(row.get("language_consistency_by_language")).items()
                       if _number(v) is not None}
        for row in loop.rounds
    }
    consistency_by_round = {r: v for r, v in consistency_by_round.items() if v}
    overall = {row["round"]: _number(row.get("language_consistency")) for row in loop.rounds}
    if not win_by_round and not consistency_by_round and all(v is None for v in overall.values()):
        return _not_measured("no round has win_rate_by_language or language consistency")
    languages = sorted({lang for table in (*win_by_round.values(), *consistency_by_round.values()) for lang in table})
    parts = []
    n_axes = int(bool(win_by_round)) + int(bool(consistency_by_round))
    if n_axes:
        fig, axes = _figure(4.5 * n_axes, 3.6, ncols=n_axes)
        column = 0
        for title, data, with_ci in (("Win rate vs SFT (gold) by language", win_by_round, True),
                                     ("Language consistency by language", consistency_by_round, False)):
            if not data:
                continue
            ax = axes[0][column]
            column += 1
            width = 0.8 / len(data)
            for index, (number, table) in enumerate(sorted(data.items())):
                present = [(position, table[lang]) for position, lang in enumerate(languages) if lang in table]
                xs = [position + (index - (len(data) - 1) / 2) * width for position, _ in present]
                values = [value for _, value in present]
                ax.bar(xs, [v["rate"] for v in values] if with_ci else values, width=width, color=_round_colour(index),
                       label=f"round {number}", yerr=_error_bars(values) if with_ci else None,
                       capsize=2 if with_ci else 0)
            if with_ci:
                ax.axhline(0.5, color="grey", linewidth=0.8, linestyle=":")
            ax.set_xticks(range(len(languages)), [_plain(lang, 8) for lang in languages])
            ax.set_ylim(0, 1.05)
            ax.set_title(title, fontsize=10)
            ax.legend(fontsize=7, loc="lower right")
        parts.append(_img(fig, "win rate and language consistency per language"))
    rounds = [row["round"] for row in loop.rounds]
    header = ["language", *(f"win rate vs SFT, round {r}" for r in rounds if r in win_by_round),
              *(f"consistency, round {r}" for r in rounds if r in consistency_by_round)]
    rows = []
    for lang in languages:
        rows.append([lang, *(_fmt_interval(win_by_round[r].get(lang)) for r in rounds if r in win_by_round),
                     *(_fmt(consistency_by_round[r].get(lang)) for r in rounds if r in consistency_by_round)])
    overall_win = {row["round"]: _interval(_nested(row, "win_rate_vs_sft", "gold")) for row in loop.rounds}
    rows.append(["all languages", *(_fmt_interval(overall_win[r]) for r in rounds if r in win_by_round),
                 *(_fmt(overall[r]) for r in rounds if r in consistency_by_round)])
    if len(header) > 1:
        parts.append(_table(header, rows))
    if any(r not in consistency_by_round and overall[r] is not None for r in rounds):
        parts.append(_table(("round", "language consistency (all answers)"), [(r, _fmt(overall[r])) for r in rounds]))
    return "".join(parts)


def panel_safety(loop: LoopDir) -> str:
    tables = {row["round"]: {str(k): _number(v) for k, v in _mapping(row.get("safety")).items() if _number(v) is not None}
              for row in loop.rounds}
    tables = {r: t for r, t in tables.items() if t}
    if not tables:
        return _not_measured("no round has a safety evaluation")
    keys: list[str] = []
    for table in tables.values():
        keys.extend(k for k in table if k not in keys)
    parts = []
    bars = [k for k in ("safe_rate_before", "safe_rate_after", "needless_refusal_rate") if k in keys]
    if bars:
        fig, axes = _figure(6.5, 3.4)
        ax = axes[0][0]
        width = 0.8 / len(bars)
        numbers = sorted(tables)
        for index, key in enumerate(bars):
            xs = [position + (index - (len(bars) - 1) / 2) * width for position, r in enumerate(numbers) if key in tables[r]]
            ys = [tables[r][key] for r in numbers if key in tables[r]]
            ax.bar(xs, ys, width=width, label=key.replace("_", " "), color=_round_colour(index))
        ax.set_xticks(range(len(numbers)), [f"round {r}" for r in numbers])
        ax.set_ylim(0, 1.05)
        ax.set_title("Safety: safe answers on harmful prompts, needless refusals on benign ones", fontsize=9)
        ax.legend(fontsize=7)
        parts.append(_img(fig, "safety rates per round"))
    numbers = sorted(tables)
    parts.append(_table(("measure", *(f"round {r}" for r in numbers)),
                        [(key, *(_fmt(tables[r].get(key)) for r in numbers)) for key in keys]))
    latest = next((row for row in reversed(loop.rounds) if _nested(row, "safety", "by_language")), None)
    by_language = _mapping(_nested(latest, "safety", "by_language")) if latest else {}
    if by_language:
        parts.append(f"<h3>By prompt language (round {latest['round']})</h3>")
        parts.append(_table(("language", "safe rate", "needless refusal rate"),
                            [(lang, _fmt(_mapping(v).get("safe_rate")), _fmt(_mapping(v).get("needless_refusal_rate")))
                             for lang, v in sorted(by_language.items())]))
    return "".join(parts)


def _fmt_seconds(seconds: float | None) -> str:
    if seconds is None:
        return "not measured"
    minutes, rest = divmod(seconds, 60.0)
    return f"{seconds:.1f} s" if seconds < 60 else f"{seconds:.1f} s ({int(minutes)} min {rest:.0f} s)"


def panel_phase_times(loop: LoopDir) -> str:
    per_round = {row["round"]: {str(k): _number(v) for k, v in _mapping(row.get("phase_seconds")).items()
                                if _number(v) is not None} for row in loop.rounds}
    per_round = {r: t for r, t in per_round.items() if t}
    if not per_round:
        return _not_measured("no round has phase_seconds")
    phases: list[str] = []
    for table in per_round.values():
        phases.extend(p for p in table if p not in phases)
    rows = []
    for number, table in sorted(per_round.items()):
        rows.append([number, *(f"{table[p]:.1f}" if p in table else "not measured" for p in phases),
                     f"{sum(table.values()):.1f}"])
    totals = [sum(t.get(p, 0.0) for t in per_round.values()) for p in phases]
    rows.append(["all rounds", *(f"{t:.1f}" for t in totals), f"{sum(totals):.1f}"])
    return _table(("round", *(f"{p} (s)" for p in phases), "total (s)"), rows) + (
        f"<p>Loop time, all phases of all rounds: {_esc(_fmt_seconds(sum(totals)))}.</p>"
    )


# ---------------------------------------------------------------------------------------------------------------------
# The page

HOW_TO_READ = {
    "summary": "The numbers the loop is judged by. Win rates count ties as half; the interval is a 95% bootstrap over "
               "prompts.",
    "warnings": "What the loop flagged along the way: a constraint judged unreachable (the Lagrange multiplier sat at "
                "its cap), too few judgments, harmlessness judgments without signal. Each says what to change.",
    "rl-curves": "The reward being optimised should rise and the KL to the SFT reference grow slowly; a KL jump to tens "
                 "of nats is a blow-up. Dotted lines separate rounds.",
    "constrained": "Constrained RL (Safe RLHF, Dai et al. 2023): the policy maximises reward - lambda * cost, and "
                   "lambda rises while the mean cost is above the limit and falls once it is below. A healthy run "
                   "brings the cost under the dashed limit with lambda levelling off; lambda climbing to its cap "
                   "means the limit is out of reach (a warning). The held-out cost compares SFT and policy answers.",
    "over-optimisation": "Gao et al. (2022): against d = sqrt(KL), the proxy (reward-model) reward keeps rising while "
                         "the gold reward rises, peaks and falls. Points past the fitted peak are over-optimised; "
                         "a widening gap between the two panels is the reward model being exploited.",
    "win-rates": "Share of prompts where the round's policy beats the other model (ties half), under the gold judge and "
                 "under the reward model. Above the 0.5 line is better; the gold judge is the truth, the reward model "
                 "is what was optimised, so a large RM-minus-gold gap means over-optimisation.",
    "rm-accuracy": "Held-out accuracy of reward models trained on the first n judgments chosen actively (by ensemble "
                   "disagreement) or at random. Active selection pays off when its curve lies above random's.",
    "agreement": "Krippendorff's alpha: 1 perfect agreement, 0 chance, below 0 systematic disagreement. Per annotator: "
                 "accuracy against the gold judge (0.5 is chance, below it is adversarial), position bias (0 for none) "
                 "and the reliability estimate; careless and adversarial annotators should stand out.",
    "languages": "Win rate under the gold judge per prompt language, and the share of answers in the prompt's "
                 "language; a language far below the others needs more data or feedback.",
    "safety": "Safety evaluation per round when the loop measured it: safe answers on harmful prompts should rise "
              "without needless refusals on benign ones rising too.",
    "phase-times": "Seconds per phase and round, from the loop's timers.",
}

STYLE = """
body { font-family: system-ui, -apple-system, "Segoe UI", sans-serif; margin: 2em auto; max-width: 1100px;
       padding: 0 1em; color: #222; line-height: 1.4; }
h1 { font-size: 1.5em; } h2 { font-size: 1.2em; border-bottom: 1px solid #ccc; padding-bottom: .2em; margin-top: 2em; }
h3 { font-size: 1em; }
nav a { margin-right: 1em; font-size: .9em; }
table { border-collapse: collapse; margin: .6em 0; font-size: .9em; }
th, td { border: 1px solid #ddd; padding: .25em .6em; text-align: left; }
th { background: #f4f4f4; }
img { max-width: 100%; display: block; margin: .6em 0; }
.how-to-read { color: #555; font-size: .92em; }
.not-measured { color: #8a6d3b; background: #fcf8e3; padding: .4em .6em; display: inline-block; }
"""


def render_html(loop: LoopDir, summary: Mapping) -> str:
    """The whole report page: one `<section id="panel-...">` per entry of `PANELS`."""
    optimisation = over_optimisation(loop.rounds)
    bodies = {
        "summary": lambda: panel_summary(loop, summary),
        "warnings": lambda: panel_warnings(loop),
        "rl-curves": lambda: panel_rl_curves(loop),
        "constrained": lambda: panel_constrained(loop),
        "over-optimisation": lambda: panel_over_optimisation(loop, optimisation),
        "win-rates": lambda: panel_win_rates(loop),
        "rm-accuracy": lambda: panel_rm_accuracy(loop),
        "agreement": lambda: panel_agreement(loop),
        "languages": lambda: panel_languages(loop),
        "safety": lambda: panel_safety(loop),
        "phase-times": lambda: panel_phase_times(loop),
    }
    title = f"alinea loop report: {loop.path.resolve().name}"
    nav = "".join(f'<a href="#panel-{pid}">{_esc(name)}</a>' for pid, name in PANELS)
    sections = []
    for pid, name in PANELS:
        sections.append(
            f'<section id="panel-{pid}"><h2>{_esc(name)}</h2><p class="how-to-read">{_esc(HOW_TO_READ[pid])}</p>'
            f"{bodies[pid]()}</section>"
        )
    stamp = datetime.now().isoformat(timespec="seconds")
    state = loop.state
    progress = (f"state: round {_esc(state.get('round', '?'))}, phase {_esc(state.get('phase', '?'))}, "
                f"{'done' if state.get('done') else 'not done'}") if state else "no loop_state.json"
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{_esc(title)}</title><style>{STYLE}</style></head><body>"
        f"<h1>{_esc(title)}</h1><p>{len(loop.rounds)} finished round(s); {progress}; generated {_esc(stamp)}.</p>"
        f"<nav>{nav}</nav>{''.join(sections)}</body></html>\n"
    )


def write_report(loop_dir: str | Path) -> tuple[Path, dict[str, Any]]:
    """Write `loop_dir/summary.json` and `loop_dir/report.html` (both atomically); return (report path, summary)."""
    from alinea.data.jsonl import write_text

    loop = read_loop_dir(loop_dir)
    summary = build_summary(loop)
    write_text(loop.path / "summary.json", [json.dumps(summary, indent=2, ensure_ascii=False, allow_nan=False) + "\n"])
    report_path = loop.path / "report.html"
    write_text(report_path, [render_html(loop, summary)])
    return report_path, summary
