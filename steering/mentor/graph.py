"""MENTOR's rule tree and rule knowledge graph: domain -> category -> rule nodes plus typed edges.

MENTOR (arXiv 2511.07107) extends a predefined static rule tree with rules distilled from the
model's own reflections. Here both live in one `RuleGraph`: tree nodes (domain, category,
rule), query nodes (the queries that produced or fed a learned rule), and typed edges
(`refines`: child -> parent in the tree; `extends`: learned rule -> the closest existing rule;
`conflicts_with`; `derived_from_query`: rule -> query node). Similarity for linking and merging
is bag-of-words cosine over lower-cased word counts (cheap, deterministic, model-free).
"""
from __future__ import annotations

import json
import math
import re
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from metalens.artifact import read_artifact, read_json, write_artifact

DATA = Path(__file__).resolve().parents[1] / "data"  # steering/data, shared by the products
STATIC_TREE = DATA / "mentor_tree.json"
ARTIFACT = "rule_graph"  # rule_graph.json (+ an empty rule_graph.safetensors)
EDGE_TYPES = ("refines", "extends", "conflicts_with", "derived_from_query")
KINDS = ("domain", "category", "rule", "query")
_WORD = re.compile(r"[a-z0-9']+")


def bow_cosine(a: str, b: str) -> float:
    """Cosine of the two texts' bag-of-words count vectors (lower-cased words); 0 when either is empty."""
    ca, cb = Counter(_WORD.findall(a.lower())), Counter(_WORD.findall(b.lower()))
    dot = sum(ca[w] * cb[w] for w in ca.keys() & cb.keys())
    norm = math.sqrt(sum(v * v for v in ca.values())) * math.sqrt(sum(v * v for v in cb.values()))
    return dot / norm if norm else 0.0


@dataclass
class RuleNode:
    """A node: a domain, a category, a rule (plain-language statement) or a query, with its provenance."""

    id: str
    kind: str  # one of KINDS
    text: str
    domain: str
    category: str | None = None
    provenance: str = "static"  # "static" (shipped tree) or "learned" (from a misaligned verdict)
    queries: list[str] = field(default_factory=list)  # the queries that produced (or were merged into) this rule
    round: int = 0  # the self-evolution round that added it (0: static)


@dataclass(frozen=True)
class Edge:
    """A typed, directed edge `source -[type]-> target`."""

    source: str
    target: str
    type: str


class RuleGraph:
    """Rule tree + knowledge graph; `rules()` are the nodes that get steering vectors."""

    def __init__(self):
        self.nodes: dict[str, RuleNode] = {}
        self.edges: list[Edge] = []

    # -- building ---------------------------------------------------------------------------
    @classmethod
    def from_tree(cls, tree: dict, source: str = "The rule tree") -> RuleGraph:
        """A graph from `{"domains": {domain: {category: [rule text, ...]}}, "conflicts": [[id, id], ...]}`.

        A tree of another shape is refused, naming `source` (the file it came from) and the bad entry.
        """
        shape = '{"domains": {domain: {category: [rule, ...]}}, "conflicts": [[rule id, rule id], ...]}'
        if not isinstance(tree, dict) or not isinstance(tree.get("domains"), dict) or not tree["domains"]:
            raise ValueError(f"{source} needs {shape}.")
        for domain, categories in tree["domains"].items():
            if not isinstance(categories, dict) or not categories:
                raise ValueError(f"{source}: domain {domain!r} must map categories to rule lists; {shape}.")
            for category, rules in categories.items():
                if not isinstance(rules, list) or not rules or not all(isinstance(r, str) and r.strip() for r in rules):
                    raise ValueError(f"{source}: {domain}/{category} must be a non-empty list of rule texts "
                                     f"(strings), not {json.dumps(rules)[:80]}.")
        conflicts = tree.get("conflicts", [])
        if not isinstance(conflicts, list) or not all(isinstance(c, list) and len(c) == 2 for c in conflicts):
            raise ValueError(f"{source}: \"conflicts\" must be a list of [rule id, rule id] pairs.")
        graph = cls()
        for domain, categories in tree["domains"].items():
            graph._add(RuleNode(domain, "domain", domain, domain))
            for category, rules in categories.items():
                cid = f"{domain}/{category}"
                graph._add(RuleNode(cid, "category", category.replace("_", " "), domain, category))
                graph.link(cid, domain, "refines")
                for i, text in enumerate(rules):
                    rid = f"{cid}/{i}"
                    graph._add(RuleNode(rid, "rule", text, domain, category))
                    graph.link(rid, cid, "refines")
        for a, b in conflicts:
            if a not in graph.nodes or b not in graph.nodes:
                raise ValueError(f"{source}: conflict [{a!r}, {b!r}] names a rule the tree does not have; rule ids "
                                 f"look like {graph.rule_ids()[0]!r}.")
            graph.link(a, b, "conflicts_with")
        return graph

    @classmethod
    def static(cls, path: str | Path | None = None) -> RuleGraph:
        """The shipped static rule tree (`steering/data/mentor_tree.json`) or the tree JSON at `path`."""
        path = Path(path) if path else STATIC_TREE
        if not path.is_file():
            raise FileNotFoundError(f"No rule tree at {path}: pass a JSON file like {STATIC_TREE}.")
        return cls.from_tree(read_json(path, "rule tree"), source=str(path))

    def _add(self, node: RuleNode) -> RuleNode:
        if node.kind not in KINDS:
            raise ValueError(f"Node kind must be one of {KINDS}, not '{node.kind}'.")
        if node.id in self.nodes:
            raise ValueError(f"Node '{node.id}' is already in the graph.")
        self.nodes[node.id] = node
        return node

    def link(self, source: str, target: str, type: str) -> Edge:
        """Add edge `source -[type]-> target` (both nodes must exist; duplicates are kept once)."""
        if type not in EDGE_TYPES:
            raise ValueError(f"Edge type must be one of {EDGE_TYPES}, not '{type}'.")
        for end in (source, target):
            if end not in self.nodes:
                raise KeyError(f"No node '{end}' in the graph; rules are e.g. {self.rule_ids()[:3]}.")
        edge = Edge(source, target, type)
        if edge not in self.edges:
            self.edges.append(edge)
        return edge

    def _query_node(self, query: str, domain: str) -> str:
        qid = "query/" + str(abs(hash_text(query)))
        if qid not in self.nodes:
            self._add(RuleNode(qid, "query", query, domain, provenance="query"))
        return qid

    def closest(self, text: str, domain: str | None = None) -> tuple[str | None, float]:
        """(id, bag-of-words cosine) of the rule most similar to `text` (within `domain` if given)."""
        best, score = None, -1.0
        for node in self.rules(domain):
            s = bow_cosine(text, node.text)
            if s > score:
                best, score = node.id, s
        return best, max(score, 0.0)

    def learn(self, text: str, domain: str, query: str, round: int = 0, merge_threshold: float = 0.6
              ) -> tuple[str, bool]:
        """Add a learned rule from a misaligned verdict, or merge it into a near-duplicate; (rule id, merged).

        A rule whose bag-of-words cosine with an existing rule of the domain is >= `merge_threshold`
        is merged: that rule records the query. Otherwise a new node is added in the closest rule's
        category with `extends` to that rule. Either way the rule gets `derived_from_query` to the query.
        """
        text = " ".join(text.split())
        if not text:
            raise ValueError("A learned rule needs text: the assessor proposed an empty rule.")
        if domain not in self.nodes or self.nodes[domain].kind != "domain":
            raise KeyError(f"No domain '{domain}' in the graph; domains are {self.domains()}.")
        near, score = self.closest(text, domain)
        if near is not None and score >= merge_threshold:
            rid, merged = near, True
        else:
            category = self.nodes[near].category if near else None
            parent = f"{domain}/{category}" if category else domain
            rid = f"{parent}/learned{sum(n.provenance == 'learned' for n in self.nodes.values())}"
            self._add(RuleNode(rid, "rule", text, domain, category, "learned", [], round))
            self.link(rid, parent, "refines")
            if near is not None:
                self.link(rid, near, "extends")
            merged = False
        node = self.nodes[rid]
        if query not in node.queries:
            node.queries.append(query)
        self.link(rid, self._query_node(query, domain), "derived_from_query")
        return rid, merged

    # -- reading ----------------------------------------------------------------------------
    def rules(self, domain: str | None = None) -> list[RuleNode]:
        """Rule nodes (static and learned) in insertion order, optionally of one domain."""
        return [n for n in self.nodes.values() if n.kind == "rule" and (domain is None or n.domain == domain)]

    def rule_ids(self) -> list[str]:
        """Ids of the rule nodes."""
        return [n.id for n in self.rules()]

    def domains(self) -> list[str]:
        """Domain names."""
        return [n.id for n in self.nodes.values() if n.kind == "domain"]

    def edges_of(self, type: str) -> list[Edge]:
        """Edges of one type."""
        return [e for e in self.edges if e.type == type]

    def summary(self) -> dict:
        """Counts of nodes by kind and provenance, and of edges by type."""
        return {"rules": len(self.rules()), "learned": sum(n.provenance == "learned" for n in self.rules()),
                **{f"edges_{t}": len(self.edges_of(t)) for t in EDGE_TYPES}}

    # -- saving -----------------------------------------------------------------------------
    def to_dict(self) -> dict:
        """JSON-ready nodes and edges."""
        return {"nodes": [asdict(n) for n in self.nodes.values()], "edges": [asdict(e) for e in self.edges]}

    @classmethod
    def from_dict(cls, d: dict) -> RuleGraph:
        """The graph `to_dict` wrote."""
        graph = cls()
        for n in d["nodes"]:
            graph._add(RuleNode(**n))
        for e in d["edges"]:
            graph.link(e["source"], e["target"], e["type"])
        return graph

    def save(self, path: str | Path) -> Path:
        """Write directory `path` with rule_graph.json (nodes, edges) through `metalens.artifact`."""
        return write_artifact(path, ARTIFACT, {}, self.to_dict())

    @classmethod
    def load(cls, path: str | Path) -> RuleGraph:
        """Read a graph written by `save`."""
        _, meta = read_artifact(path, ARTIFACT, "write one with RuleGraph.save(path).")
        return cls.from_dict(meta)

    def __eq__(self, other) -> bool:
        return isinstance(other, RuleGraph) and self.to_dict() == other.to_dict()

    def __len__(self) -> int:
        return len(self.nodes)

    # -- drawing ----------------------------------------------------------------------------
    def layout(self) -> dict[str, tuple[float, float]]:
        """Node positions: tree levels (domain y=3, category 2, rule 1, query 0), x by order within the tree."""
        order = []
        for d in self.domains():
            order.append(d)
            for c in (n for n in self.nodes.values() if n.kind == "category" and n.domain == d):
                order.append(c.id)
                order += [r.id for r in self.rules(d) if r.category == c.category]
            order += [r.id for r in self.rules(d) if r.category is None]
            order += [q.id for q in self.nodes.values() if q.kind == "query" and q.domain == d]
        level = {"domain": 3.0, "category": 2.0, "rule": 1.0, "query": 0.0}
        pos, slots = {}, Counter()
        for nid in order:
            kind = self.nodes[nid].kind
            pos[nid] = [slots[kind], level[kind]]
            slots[kind] += 1
        for nid, (x, y) in pos.items():  # spread each level over [0, 1] so levels of unequal size line up
            width = max(slots[self.nodes[nid].kind] - 1, 1)
            pos[nid] = (x / width, y)
        # Parents sit above the mean of their children: a readable tree without a graph library.
        for kind in ("category", "domain"):
            for nid in (n for n in order if self.nodes[n].kind == kind):
                kids = [pos[e.source][0] for e in self.edges if e.type == "refines" and e.target == nid]
                if kids:
                    pos[nid] = (float(np.mean(kids)), pos[nid][1])
        return pos

    def figure(self, title: str = "Rule knowledge graph"):
        """Interactive plotly figure: nodes at `layout()`, edges coloured by type, hover shows text and queries."""
        import plotly.graph_objects as go

        pos = self.layout()
        colours = {"refines": "#bbbbbb", "extends": "#1f77b4", "conflicts_with": "#d62728",
                   "derived_from_query": "#2ca02c"}
        fig = go.Figure()
        for etype, colour in colours.items():
            xs, ys = [], []
            for e in self.edges_of(etype):
                xs += [pos[e.source][0], pos[e.target][0], None]
                ys += [pos[e.source][1], pos[e.target][1], None]
            fig.add_trace(go.Scatter(x=xs, y=ys, mode="lines", name=etype, line=dict(color=colour, width=1.5),
                                     hoverinfo="skip"))
        styles = {("domain", "static"): ("square", "#444444"), ("category", "static"): ("diamond", "#777777"),
                  ("rule", "static"): ("circle", "#1f77b4"), ("rule", "learned"): ("star", "#ff7f0e"),
                  ("query", "query"): ("circle-open", "#2ca02c")}
        for (kind, prov), (symbol, colour) in styles.items():
            nodes = [n for n in self.nodes.values() if n.kind == kind and n.provenance == prov]
            if not nodes:
                continue
            hover = [f"<b>{n.id}</b> ({n.provenance}, round {n.round})<br>{_wrap(n.text)}"
                     + (f"<br>queries: {len(n.queries)}<br>{_wrap('; '.join(n.queries[:3]))}" if n.queries else "")
                     for n in nodes]
            fig.add_trace(go.Scatter(x=[pos[n.id][0] for n in nodes], y=[pos[n.id][1] for n in nodes],
                                     mode="markers", name=f"{kind} ({prov})", hovertext=hover, hoverinfo="text",
                                     marker=dict(symbol=symbol, size=14 if kind != "query" else 8, color=colour)))
        fig.update_layout(title=title, height=520, xaxis=dict(visible=False),
                          yaxis=dict(tickvals=[0, 1, 2, 3], ticktext=["query", "rule", "category", "domain"]))
        return fig


def _wrap(text: str, width: int = 60) -> str:
    words, lines, line = text.split(), [], ""
    for w in words:
        if len(line) + len(w) > width:
            lines.append(line)
            line = ""
        line = f"{line} {w}".strip()
    return "<br>".join(lines + [line])


def hash_text(text: str) -> int:
    """A stable (not per-process salted) 48-bit hash of `text`, for query node ids."""
    import hashlib

    return int(hashlib.sha256(text.encode()).hexdigest()[:12], 16)
