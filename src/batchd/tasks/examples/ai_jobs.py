"""The AI job queue's example job types (seed 003), doing deterministic local work.

Each behaves like an LLM call for the queue's accounting: it reads its payload as a
prompt (about 4 characters a token, plus a fixed instruction) and writes a short
analysis and a one-line summary, reporting those tokens. The work itself is plain
arithmetic, so the same payload always gives the same result and tokens. Empty
payloads are fine (the document's example sends ``{}``).
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from typing import Any

import orjson

from batchd.tasks.context import TaskContext
from batchd.tasks.registry import task

INSTRUCTION_TOKENS = 120  # the job type's fixed instructions, as a prompt would carry
NUMBERS = {"type": "array", "items": {"type": "number"}}
POSITIVE = {"gain", "gains", "beat", "beats", "growth", "strong", "up", "profit", "bullish",
            "record", "upgrade", "good", "great", "positive"}
NEGATIVE = {"loss", "losses", "miss", "misses", "weak", "down", "decline", "bearish", "cut",
            "downgrade", "bad", "poor", "negative", "risk"}


def tokens(value: Any) -> int:
    return math.ceil(len(orjson.dumps(value)) / 4)


def job_type(name: str, properties: dict[str, Any], about: str) -> Callable[..., Any]:
    """Register ``fn(payload) -> (analysis, summary)`` as a job type that reports tokens."""

    def wrap(fn: Callable[[dict[str, Any]], tuple[dict[str, Any], str]]) -> Callable[..., Any]:
        def handler(payload: dict[str, Any], ctx: TaskContext) -> dict[str, Any]:
            analysis, summary = fn(payload)
            out = {"job_type": name, "summary": summary, "analysis": analysis}
            ctx.report_usage(tokens_in=INSTRUCTION_TOKENS + tokens(payload),
                             tokens_out=tokens(out))
            return out

        handler.__doc__ = about
        task(name, input_schema={"type": "object", "properties": properties},
             mode="inline", description=about)(handler)
        return fn

    return wrap


def _mean(xs: list[float]) -> float:
    return sum(xs) / len(xs) if xs else 0.0


@job_type("portfolio_summary", {"holdings": {"type": "array"}},
          "Summarise a portfolio: value, weights and the largest position.")
def portfolio_summary(p: dict[str, Any]) -> tuple[dict[str, Any], str]:
    values = {h.get("symbol", f"#{i}"): float(h.get("quantity", 0)) * float(h.get("price", 0))
              for i, h in enumerate(p.get("holdings", []))}
    total = sum(values.values())
    weights = {s: round(v / total, 4) if total else 0.0 for s, v in values.items()}
    largest = max(values, key=lambda s: values[s]) if values else None
    return ({"total_value": round(total, 2), "positions": len(values), "weights": weights,
             "largest_position": largest},
            f"{len(values)} positions worth {total:,.2f}; largest {largest or 'none'}.")


@job_type("risk_report", {"returns": NUMBERS, "confidence": {"type": "number"}},
          "Report the risk of a return series: volatility, value at risk, drawdown.")
def risk_report(p: dict[str, Any]) -> tuple[dict[str, Any], str]:
    rets = [float(r) for r in p.get("returns", [])]
    mu = _mean(rets)
    vol = math.sqrt(_mean([(r - mu) ** 2 for r in rets])) if rets else 0.0
    ordered = sorted(rets)
    cut = int((1 - float(p.get("confidence", 0.95))) * len(ordered))
    var = -ordered[min(cut, len(ordered) - 1)] if ordered else 0.0
    peak, equity, drawdown = 1.0, 1.0, 0.0
    for r in rets:
        equity *= 1 + r
        peak = max(peak, equity)
        drawdown = max(drawdown, 1 - equity / peak)
    return ({"observations": len(rets), "volatility": round(vol, 6), "value_at_risk": round(var, 6),
             "max_drawdown": round(drawdown, 6)},
            f"Volatility {vol:.2%}, VaR {var:.2%}, max drawdown {drawdown:.2%}.")


@job_type("strategy_backtest", {"prices": NUMBERS, "fast": {"type": "integer", "minimum": 1},
                                "slow": {"type": "integer", "minimum": 2}},
          "Backtest a moving-average crossover strategy on a price series.")
def strategy_backtest(p: dict[str, Any]) -> tuple[dict[str, Any], str]:
    prices = [float(x) for x in p.get("prices", [])]
    fast, slow = int(p.get("fast", 3)), int(p.get("slow", 5))
    cash, units, trades = 1.0, 0.0, 0
    for i in range(slow, len(prices)):
        f, s = _mean(prices[i - fast:i]), _mean(prices[i - slow:i])
        if f > s and units == 0 and prices[i] > 0:
            units, cash, trades = cash / prices[i], 0.0, trades + 1
        elif f < s and units > 0:
            cash, units, trades = units * prices[i], 0.0, trades + 1
    final = cash + units * (prices[-1] if prices else 0.0)
    return ({"trades": trades, "final_equity": round(final, 6),
             "return_pct": round((final - 1) * 100, 4)},
            f"{trades} trades, return {(final - 1):.2%}.")


@job_type("sentiment_analysis", {"text": {"type": "string"},
                                 "texts": {"type": "array", "items": {"type": "string"}}},
          "Score the sentiment of a text (or texts) from -1 to 1.")
def sentiment_analysis(p: dict[str, Any]) -> tuple[dict[str, Any], str]:
    words = re.findall(r"[a-z']+", " ".join([p.get("text", ""), *p.get("texts", [])]).lower())
    pos, neg = sum(w in POSITIVE for w in words), sum(w in NEGATIVE for w in words)
    score = (pos - neg) / (pos + neg) if pos + neg else 0.0
    label = "positive" if score > 0.2 else "negative" if score < -0.2 else "neutral"
    return ({"score": round(score, 4), "label": label, "positive": pos, "negative": neg,
             "words": len(words)},
            f"Sentiment {label} ({score:+.2f}) over {len(words)} words.")


@job_type("model_evaluation", {"predictions": {"type": "array"}, "labels": {"type": "array"}},
          "Evaluate binary predictions against labels: accuracy, precision, recall, F1.")
def model_evaluation(p: dict[str, Any]) -> tuple[dict[str, Any], str]:
    pairs = list(zip(p.get("predictions", []), p.get("labels", []), strict=False))
    tp = sum(bool(a) and bool(b) for a, b in pairs)
    fp = sum(bool(a) and not b for a, b in pairs)
    fn = sum(not a and bool(b) for a, b in pairs)
    accuracy = sum(bool(a) == bool(b) for a, b in pairs) / len(pairs) if pairs else 0.0
    precision = tp / (tp + fp) if tp + fp else 0.0
    recall = tp / (tp + fn) if tp + fn else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return ({"n": len(pairs), "accuracy": round(accuracy, 4), "precision": round(precision, 4),
             "recall": round(recall, 4), "f1": round(f1, 4)},
            f"Accuracy {accuracy:.1%}, F1 {f1:.3f} on {len(pairs)} examples.")


@job_type("trading_analytics", {"trades": {"type": "array"}},
          "Analyse closed trades: win rate, total and average profit and loss.")
def trading_analytics(p: dict[str, Any]) -> tuple[dict[str, Any], str]:
    pnl = [float(t.get("pnl", 0)) if isinstance(t, dict) else float(t)
           for t in p.get("trades", [])]
    wins = sum(x > 0 for x in pnl)
    rate = wins / len(pnl) if pnl else 0.0
    return ({"n_trades": len(pnl), "win_rate": round(rate, 4), "total_pnl": round(sum(pnl), 2),
             "avg_pnl": round(_mean(pnl), 4)},
            f"{len(pnl)} trades, win rate {rate:.0%}, P&L {sum(pnl):,.2f}.")
