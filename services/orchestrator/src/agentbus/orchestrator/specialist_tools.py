"""The specialists' tools beyond the supervisor's original four (tools.py): each is a request
over the bus (analytics' named queries and gated SQL, the graph's named queries, document
search) or a pipeline of several, and never raises into the graph (an error is a result).

Every request carries the run's tenant; SQL goes through analytics' gate, which scopes it to
that tenant whatever the text says. Results are `{"rows": [...]}` (what any model, the offline
one included, reads as facts) plus what a step shows: `query` (the SQL that ran), `sources`.
"""

from __future__ import annotations

import json
import re
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import nats.errors

from agentbus.contracts import AnalyticsQuery, GraphQuery
from agentbus.contracts import subjects as s
from agentbus.contracts.insights import ANALYTICS_SQL, AnalyticsSql, AnomalyDetected, anomaly_alert
from agentbus.contracts.streams import ALERTS

from . import text_to_query
from .tools import BY_NAME as BASE_TOOLS
from .tools import Tool

if TYPE_CHECKING:
    from .tools import ToolBox

Result = dict[str, Any]
Run = Callable[["ToolBox", str, dict[str, Any]], Awaitable[Result]]


@dataclass(frozen=True)
class Extra:
    tool: Tool
    run: Run


def _string(description: str) -> dict[str, Any]:
    return {"type": "string", "description": description}


def _days(arguments: dict[str, Any], default: float) -> float:
    raw = str(arguments.get("period") or "").strip().lower()
    m = re.fullmatch(r"(\d{1,4})\s*(h|hours?|d|days?|w|weeks?|m|months?)", raw)
    if not m:
        return default
    return int(m.group(1)) * {"h": 1 / 24, "d": 1, "w": 7, "m": 30}[m.group(2)[0]]


def _since(days: float) -> str:
    return f"ts >= now() - INTERVAL {max(1, round(days * 24))} HOUR"


def _rows(result: Result) -> list[dict[str, Any]]:
    """Rows as dicts, from a columns + rows table or a list of objects."""
    rows = result.get("rows") or []
    columns = result.get("columns") or []
    if rows and isinstance(rows[0], list):
        return [dict(zip(columns, r, strict=False)) for r in rows]
    return [r for r in rows if isinstance(r, dict)]


async def analytics(box: ToolBox, tenant: str, name: str, params: dict[str, Any]) -> Result:
    aq = AnalyticsQuery(tenant_id=tenant, name=name, params=params)  # type: ignore[arg-type]
    return await box._request(s.ANALYTICS_QUERY, aq.model_dump_json(), "analytics")


async def graph(box: ToolBox, tenant: str, name: str, limit: int = 10, **params: Any) -> Result:
    q = GraphQuery(tenant_id=tenant, name=name, params=params, limit=limit)  # type: ignore[arg-type]
    return await box._request(s.GRAPH_QUERY, q.model_dump_json(), "the graph")


async def sql(
    box: ToolBox, tenant: str, text: str, max_rows: int = 50, question: str | None = None
) -> Result:
    """Rows of one SELECT through analytics' gate; `query` is what ran (tenant-scoped)."""
    req = AnalyticsSql(tenant_id=tenant, sql=text, max_rows=max_rows, question=question)
    out = await box._request(ANALYTICS_SQL, req.model_dump_json(), "analytics")
    result: Result = {
        "query": out.get("sql") or text,
        "columns": out.get("columns") or [],
        "rows": out.get("rows") or [],
    }
    if out.get("truncated"):
        result["truncated"] = True
    if out.get("rejected"):
        result["error"] = f"the query was refused: {out['rejected']}"
    elif out.get("error"):
        result["error"] = str(out["error"])
    return result


# --- delivery metrics ---------------------------------------------------------------------------


async def deployment_history(box: ToolBox, tenant: str, arguments: dict[str, Any]) -> Result:
    where = ["kind = 'deployment'", _since(_days(arguments, 30))]
    if arguments.get("service"):
        where.append(f"service = {text_to_query.quote(str(arguments['service']).lower())}")
    return await sql(
        box,
        tenant,
        "SELECT ts, service, deployment_id, status, length(commits) AS commits FROM events "
        f"WHERE {' AND '.join(where)} ORDER BY ts DESC LIMIT 20",
    )


async def lead_time(box: ToolBox, tenant: str, arguments: dict[str, Any]) -> Result:
    params: dict[str, Any] = {"period": str(arguments.get("period") or "30d")}
    if arguments.get("service"):
        params["service"] = str(arguments["service"]).lower()
    found = await analytics(box, tenant, "dora", params)
    if found.get("error"):
        return {"error": str(found["error"])}
    keep = ("service", "deployments", "lead", "changes")
    rows = [
        {k: v for k, v in row.items() if any(word in k for word in keep)} for row in _rows(found)
    ]
    return {"rows": rows, "source": "analytics dora: commit to first deployment, hours"}


async def incident_report(box: ToolBox, tenant: str, arguments: dict[str, Any]) -> Result:
    where = ["kind = 'incident'", _since(_days(arguments, 30))]
    if arguments.get("service"):
        where.append(f"service = {text_to_query.quote(str(arguments['service']).lower())}")
    having = " HAVING state != 'resolved'" if arguments.get("open_only") else ""
    return await sql(
        box,
        tenant,
        "SELECT incident_id, service, argMax(status, ts) AS state, min(ts) AS opened, "
        "max(ts) AS updated, any(JSONExtractString(data, 'title')) AS title FROM events "
        f"WHERE {' AND '.join(where)} GROUP BY incident_id, service{having} "
        "ORDER BY opened DESC LIMIT 20",
    )


async def detect_anomalies(box: ToolBox, tenant: str, arguments: dict[str, Any]) -> Result:
    """The anomaly pipeline: analytics' robust z-scores per day, each finding published on the
    bus as `AnomalyDetected` (deduplicated per tenant, series and day by the ALERTS stream)."""
    params: dict[str, Any] = {"period": str(arguments.get("period") or "7d")}
    if arguments.get("series"):
        params["series"] = str(arguments["series"])
    found = await analytics(box, tenant, "anomalies", params)
    if found.get("error"):
        return {"error": str(found["error"])}
    rows = _rows(found)
    published = deferred = 0
    js = box.nc.jetstream()
    for row in rows:
        alert = AnomalyDetected(
            tenant_id=tenant,
            series=str(row["series"]),
            day=str(row["day"]),
            value=float(row["value"] or 0.0),
            baseline_median=row.get("baseline_median"),
            z=row.get("z_score"),
            direction="high" if row.get("direction") == "high" else "low",
        )
        subject, body = anomaly_alert(tenant), alert.model_dump_json().encode()
        headers = {"Nats-Msg-Id": f"anomaly:{tenant}:{alert.series}:{alert.day}"}
        try:
            ack = await js.publish(subject, body, headers=headers)
        except (nats.errors.Error, TimeoutError) as exc:
            # ALERTS full or away: the findings are still the answer; the alert goes later.
            if box.outbox is None:
                return {"error": f"the alerts could not be published: {type(exc).__name__}"}
            box.outbox.defer(subject, body, stream=ALERTS.name, headers=headers)
            deferred += 1
            continue
        published += 0 if ack.duplicate else 1
    return {
        "rows": rows,
        "alerts_published": published,
        **({"alerts_deferred": deferred} if deferred else {}),
        "subject": anomaly_alert(tenant),
        "source": "analytics anomalies (robust z-score against the 14 days before)",
    }


async def ask_event_data(box: ToolBox, tenant: str, arguments: dict[str, Any]) -> Result:
    question = str(arguments.get("question") or "")
    text = str(arguments.get("sql") or "").strip()
    how = "sql given by the model"
    if not text:
        try:
            text = text_to_query.translate(question)
        except text_to_query.NotUnderstood as exc:
            return {"error": f"I cannot turn that into a query: {exc}"}
        how = "rule-based translation"
    result = await sql(box, tenant, text, max_rows=50, question=question or None)
    result["translation"] = how
    return result


# --- resource planning -------------------------------------------------------------------------


async def person_skills(box: ToolBox, tenant: str, arguments: dict[str, Any]) -> Result:
    return await graph(box, tenant, "skills_of", person=str(arguments["person"]))


async def person_work(box: ToolBox, tenant: str, arguments: dict[str, Any]) -> Result:
    return await graph(box, tenant, "work_of", person=str(arguments["person"]))


_AUTHOR = "JSONExtractString(data, 'author', 'name')"
# Words that are never a repository's name (graph_augmented_answer's candidates).
_COMMON = frozenset(
    """about after again also back before being could does each from have here into just like
    make more most much must need only other over owns same should some such than that their
    them then there these they this those through under until very what when where which while
    who whom whose with would your owner owners service services team people person the and
    with when""".split()  # noqa: SIM905
)


async def team_load(box: ToolBox, tenant: str, arguments: dict[str, Any]) -> Result:
    where = ["kind = 'commit'", _since(_days(arguments, 14))]
    if arguments.get("team"):
        team = text_to_query.quote(str(arguments["team"]))
        where.append(f"lower(JSONExtractString(data, 'team')) = lower({team})")
    return await sql(
        box,
        tenant,
        f"SELECT {_AUTHOR} AS person, JSONExtractString(data, 'team') AS team, "
        "count() AS commits, uniqExact(service) AS repositories, max(ts) AS last_commit "
        f"FROM events WHERE {' AND '.join(where)} GROUP BY person, team "
        "ORDER BY commits DESC, person LIMIT 50",
    )


async def availability(box: ToolBox, tenant: str, arguments: dict[str, Any]) -> Result:
    where = ["kind = 'commit'", _since(30)]
    if arguments.get("person"):
        where.append(f"lower({_AUTHOR}) = lower({text_to_query.quote(str(arguments['person']))})")
    result = await sql(
        box,
        tenant,
        f"SELECT {_AUTHOR} AS person, max(ts) AS last_active, "
        "dateDiff('day', max(ts), now()) AS days_since_active, "
        "countIf(ts >= now() - INTERVAL 7 DAY) AS commits_last_7_days FROM events "
        f"WHERE {' AND '.join(where)} GROUP BY person ORDER BY commits_last_7_days, person "
        "LIMIT 50",
    )
    # Said in the result: there is no calendar or leave source, only activity.
    result["basis"] = "inferred from activity events (no calendar or leave data)"
    return result


async def one_on_one_prep(box: ToolBox, tenant: str, arguments: dict[str, Any]) -> Result:
    """The 1:1 prep pipeline: recent work, ownership, skills and open incidents of a person's
    services, each section with the source it came from."""
    person = str(arguments["person"])
    name = text_to_query.quote(person)
    skills = await graph(box, tenant, "skills_of", limit=5, person=person)
    work = await graph(box, tenant, "work_of", limit=5, person=person)
    recent = await sql(
        box,
        tenant,
        "SELECT service, count() AS commits, max(ts) AS last_commit FROM events "
        f"WHERE kind = 'commit' AND lower({_AUTHOR}) = lower({name}) AND {_since(14)} "
        "GROUP BY service ORDER BY commits DESC LIMIT 10",
    )
    services = sorted({str(r.get("repository") or "").lower() for r in _rows(work)} - {""})
    incidents: Result = {"rows": []}
    if services:
        listed = ", ".join(text_to_query.quote(x) for x in services)
        incidents = await sql(
            box,
            tenant,
            "SELECT incident_id, service, argMax(status, ts) AS state, min(ts) AS opened, "
            "any(JSONExtractString(data, 'title')) AS title FROM events "
            f"WHERE kind = 'incident' AND service IN ({listed}) AND {_since(30)} "
            "GROUP BY incident_id, service HAVING state != 'resolved' ORDER BY opened DESC "
            "LIMIT 10",
        )
    errors = [str(r["error"]) for r in (skills, work, recent, incidents) if r.get("error")]
    work_rows = _rows(work)
    owned = sorted({o for r in work_rows for o in r.get("owners") or []})
    teams = sorted({t for r in work_rows for t in r.get("teams") or []})
    sections = [
        {
            "section": "recent work",
            "detail": "; ".join(f"{r['service']}: {r['commits']} commits" for r in _rows(recent))
            or "no commits in the last 14 days",
            "source": "analytics events (commits, last 14 days)",
        },
        {
            "section": "ownership",
            "detail": "; ".join(
                f"{r['repository']} (owned by {', '.join(r.get('owners') or []) or 'nobody'})"
                for r in work_rows
            )
            or "no repositories",
            "source": "graph work_of (CONTRIBUTED, OWNS)",
        },
        {
            "section": "skills",
            "detail": ", ".join(f"{r['skill']} ({r['events']})" for r in _rows(skills))
            or "none recorded",
            "source": "graph skills_of (USED)",
        },
        {
            "section": "open incidents",
            "detail": "; ".join(
                f"{r['incident_id']} on {r['service']}: {r.get('title') or ''}".strip()
                for r in _rows(incidents)
            )
            or "none open on their services",
            "source": "analytics events (incidents, last 30 days)",
        },
        {
            "section": "team",
            "detail": ", ".join(teams) or "unknown",
            "source": "graph MEMBER_OF",
        },
    ]
    out: Result = {
        "person": person,
        "rows": sections,
        "owners_of_their_repositories": owned,
        "sources": [sec["source"] for sec in sections],
        "queries": [q for q in (recent.get("query"), incidents.get("query")) if q],
    }
    if errors:
        out["error"] = "; ".join(dict.fromkeys(errors))  # each failure once
    return out


async def suggest_assignee(box: ToolBox, tenant: str, arguments: dict[str, Any]) -> Result:
    """Candidates for a piece of work: by skill and by contributions to the repository, the
    less loaded first among equals (commits in the last 14 days)."""
    score: dict[str, float] = {}
    why: dict[str, list[str]] = {}
    if arguments.get("skill"):
        found = await graph(box, tenant, "people_by_skill", skill=str(arguments["skill"]))
        if found.get("error"):
            # The graph down is not "nobody knows it": say what failed instead.
            return {"error": str(found["error"])}
        for r in _rows(found):
            score[r["person"]] = score.get(r["person"], 0.0) + float(r.get("weight") or 0)
            why.setdefault(r["person"], []).append(f"knows {r['skill']}")
    if arguments.get("repository"):
        found = await graph(box, tenant, "owners_of", repository=str(arguments["repository"]))
        if found.get("error"):
            return {"error": str(found["error"])}
        for r in _rows(found):
            if r.get("person"):
                score[r["person"]] = score.get(r["person"], 0.0) + float(r.get("weight") or 0)
                why.setdefault(r["person"], []).append(f"works on {r['repository']}")
    if not score:
        return {"rows": [], "note": "nobody with that skill or repository in the graph"}
    load = {r["person"]: int(r["commits"]) for r in _rows(await team_load(box, tenant, {}))}
    ranked = sorted(score, key=lambda p: (-round(score[p], 1), load.get(p, 0), p))
    return {
        "rows": [
            {
                "person": p,
                "fit": round(score[p], 2),
                "why": ", ".join(why[p]),
                "commits_last_14_days": load.get(p, 0),
            }
            for p in ranked[:5]
        ],
        "source": "graph people_by_skill / owners_of, load from analytics events",
    }


# --- insights ----------------------------------------------------------------------------------


async def related_topics(box: ToolBox, tenant: str, arguments: dict[str, Any]) -> Result:
    return await graph(box, tenant, "entity_neighbourhood", entity=str(arguments["entity"]))


async def documents_about(box: ToolBox, tenant: str, arguments: dict[str, Any]) -> Result:
    return await graph(box, tenant, "documents_mentioning", entity=str(arguments["entity"]))


async def graph_augmented_answer(box: ToolBox, tenant: str, arguments: dict[str, Any]) -> Result:
    """Document passages about the question, plus the people graph around what they name: the
    owners and main contributors of each repository or service the question or passages name."""
    question = str(arguments.get("question") or "").strip()
    if not question:
        return {"error": "graph_augmented_answer needs the question"}
    found = await box.call(tenant, "search_documents", {"query": question})
    hits = [h for h in found.get("hits") or [] if isinstance(h, dict)]
    # The names the question and passages use most are the likely repositories and services:
    # ask owners_of for the five most frequent (the graph answers nothing for other words).
    counts: Counter[str] = Counter()
    for text in [question, *(str(h.get("text") or "") for h in hits)]:
        counts.update(
            w
            for w in re.findall(r"[a-z0-9][a-z0-9\-_]+", text.lower())
            if len(w) > 3 and w not in _COMMON
        )
    candidates = [w for w, _ in counts.most_common(5)]
    people: list[dict[str, Any]] = []
    graph_error = ""
    for name in candidates[:5]:
        owners = await graph(box, tenant, "owners_of", limit=3, repository=name)
        if owners.get("error"):
            graph_error = str(owners["error"])  # the same for every name: stop asking
            break
        people += [{**r, "via": f"owners_of {name}"} for r in _rows(owners)]
    out: Result = {
        **found,
        "hits": hits,
        "rows": [
            {
                "repository": r.get("repository"),
                "owners": r.get("owners"),
                "person": r.get("person"),
                "events": r.get("events"),
            }
            for r in people
        ],
        "sources": ["retrieval.search", *sorted({p["via"] for p in people})],
    }
    if graph_error:
        # The passages still stand; the people around them are what could not be looked up.
        out["error"] = "; ".join(x for x in (str(found.get("error") or ""), graph_error) if x)
    return out


async def recent_alerts(box: ToolBox, tenant: str, arguments: dict[str, Any]) -> Result:
    """The tenant's AnomalyDetected alerts still in the ALERTS stream, newest first."""
    from nats.js.api import DeliverPolicy
    from nats.js.errors import NotFoundError

    js = box.nc.jetstream()
    subject = anomaly_alert(tenant)
    try:
        info = await js.stream_info("ALERTS", subjects_filter=subject)
    except NotFoundError:
        return {"rows": [], "note": "no alerts yet"}
    count = int((info.state.subjects or {}).get(subject, 0))
    rows: list[dict[str, Any]] = []
    if count:
        sub = await js.subscribe(subject, ordered_consumer=True, deliver_policy=DeliverPolicy.ALL)
        try:
            for _ in range(count):
                msg = await sub.next_msg(timeout=box.timeout)
                alert = json.loads(msg.data)
                rows.append({k: alert.get(k) for k in ("series", "day", "value", "z", "direction")})
        finally:
            await sub.unsubscribe()
    rows.sort(key=lambda r: str(r["day"]), reverse=True)
    return {"rows": rows[:20], "source": f"ALERTS stream, {subject}"}


async def cross_source_summary(box: ToolBox, tenant: str, arguments: dict[str, Any]) -> Result:
    """Delivery metrics, incidents, anomalies and (with a topic) documents, in one result."""
    period = str(arguments.get("period") or "30d")
    dora = await analytics(box, tenant, "dora", {"period": period})
    incidents = await incident_report(box, tenant, {"period": period, "open_only": True})
    anomalies = await analytics(box, tenant, "anomalies", {"period": "7d"})
    rows: list[dict[str, Any]] = []
    for r in _rows(dora):
        if r.get("service") == "*":
            rows.append({"section": "delivery", **r})
    rows.append(
        {
            "section": "open incidents",
            "count": len(_rows(incidents)),
            "detail": ", ".join(f"{r['incident_id']} ({r['service']})" for r in _rows(incidents)),
        }
    )
    rows.append(
        {
            "section": "anomalies (7 days)",
            "count": len(_rows(anomalies)),
            "detail": ", ".join(f"{r['series']} {r['day']}" for r in _rows(anomalies)[:5]),
        }
    )
    out: Result = {
        "rows": rows,
        "sources": ["analytics dora", "analytics events (incidents)", "analytics anomalies"],
        "queries": [incidents.get("query")],
    }
    if arguments.get("topic"):
        found = await box.call(tenant, "search_documents", {"query": str(arguments["topic"])})
        out["hits"] = found.get("hits") or []
        out["sources"].append("retrieval.search")
    errors = [str(x["error"]) for x in (dora, incidents, anomalies) if x.get("error")]
    if errors:
        out["error"] = "; ".join(dict.fromkeys(errors))  # each failure once
    return out


# --- the table -----------------------------------------------------------------------------------

_PERIOD = _string("Period, e.g. 7d, 30d, 2w")


def _params(required: tuple[str, ...] = (), **props: dict[str, Any]) -> dict[str, Any]:
    return {"type": "object", "properties": props, "required": list(required)}


EXTRAS: tuple[Extra, ...] = (
    Extra(
        Tool(
            "deployment_history",
            "delivery_metrics",
            "Deployment history: the latest rollouts of a service, each with its time, status "
            "and commits.",
            _params(service=_string("The service or repository"), period=_PERIOD),
        ),
        deployment_history,
    ),
    Extra(
        Tool(
            "lead_time",
            "delivery_metrics",
            "Cycle time and lead time for changes: how long a commit takes to reach production, "
            "per service.",
            _params(service=_string("The service or repository"), period=_PERIOD),
        ),
        lead_time,
    ),
    Extra(
        Tool(
            "incident_report",
            "delivery_metrics",
            "Incidents and outages: which incidents are open, what broke on which service and "
            "when it was resolved.",
            _params(
                service=_string("The service"),
                period=_PERIOD,
                open_only={"type": "boolean", "description": "Only incidents still open"},
            ),
        ),
        incident_report,
    ),
    Extra(
        Tool(
            "detect_anomalies",
            "delivery_metrics",
            "Detect anomalies: unusual spikes or drops in deployments, incidents, commits, runs, "
            "tokens or cost; raises an alert for each one.",
            _params(period=_PERIOD),
        ),
        detect_anomalies,
    ),
    Extra(
        Tool(
            "ask_event_data",
            "delivery_metrics",
            "Answer how many questions by counting events: how many deployments per service, "
            "how many commits per person, incidents per day, runs, tokens or tool calls per week.",
            _params(
                ("question",),
                question=_string("The question in plain language"),
                sql=_string("Optional: one ClickHouse SELECT to run instead of translating"),
            ),
        ),
        ask_event_data,
    ),
    Extra(
        Tool(
            "person_skills",
            "resource_planner",
            "What a person knows: the skills, languages and technologies someone has used.",
            _params(("person",), person=_string("The person's name")),
        ),
        person_skills,
    ),
    Extra(
        Tool(
            "person_work",
            "resource_planner",
            "What a person works on: the repositories someone contributed to, their team and "
            "the owners of those repositories.",
            _params(("person",), person=_string("The person's name")),
        ),
        person_work,
    ),
    Extra(
        Tool(
            "team_load",
            "resource_planner",
            "Workload: how busy people are, commits per person and team recently, who is "
            "overloaded.",
            _params(team=_string("The team"), period=_PERIOD),
        ),
        team_load,
    ),
    Extra(
        Tool(
            "availability",
            "resource_planner",
            "Availability: who is available or free, when each person was last active.",
            _params(person=_string("The person's name")),
        ),
        availability,
    ),
    Extra(
        Tool(
            "one_on_one_prep",
            "resource_planner",
            "Prepare a 1:1 meeting with a person: a brief of their recent work, ownership, "
            "skills and open incidents.",
            _params(("person",), person=_string("The person's name")),
        ),
        one_on_one_prep,
    ),
    Extra(
        Tool(
            "suggest_assignee",
            "resource_planner",
            "Who should take a piece of work or review it: candidates with the skill or who "
            "work on the repository, ranked by fit and current load.",
            _params(
                ("skill",),
                skill=_string("The skill needed, e.g. Rust"),
                repository=_string("The repository"),
            ),
        ),
        suggest_assignee,
    ),
    Extra(
        Tool(
            "graph_augmented_answer",
            "insights",
            "Who owns or works on the systems a document describes: passages together with "
            "the owners and contributors of the services they name.",
            # `question` is not marked required: a tool with a required free-text question is a
            # general search to the offline model, which then sent 21 of 56 documentation
            # questions here instead of to search_documents (a missing one is an error result).
            _params((), question=_string("The question in plain language")),
        ),
        graph_augmented_answer,
    ),
    Extra(
        Tool(
            "related_topics",
            "insights",
            "Topics, systems and terms related to a named one in the documents' knowledge graph.",
            _params(("entity",), entity=_string("The topic, system or term")),
        ),
        related_topics,
    ),
    Extra(
        Tool(
            "documents_about",
            "insights",
            "Which documents mention a named system, term or topic, with their pages.",
            _params(("entity",), entity=_string("The system, term or topic")),
        ),
        documents_about,
    ),
    Extra(
        Tool(
            "recent_alerts",
            "insights",
            "Recent anomaly alerts published by anomaly detection over the delivery metrics.",
            _params(),
        ),
        recent_alerts,
    ),
    Extra(
        Tool(
            "cross_source_summary",
            "insights",
            "A summary or overview across sources for a period: delivery metrics, open "
            "incidents and anomalies together, with documents on a topic.",
            _params(topic=_string("Optional topic to add documents about"), period=_PERIOD),
        ),
        cross_source_summary,
    ),
)

EXTRA: dict[str, Extra] = {e.tool.name: e for e in EXTRAS}
# Every tool by name: the supervisor's original four and the specialists' own.
ALL_TOOLS: dict[str, Tool] = {**BASE_TOOLS, **{e.tool.name: e.tool for e in EXTRAS}}
