"""Give a corpus file the diagram layout a modeler saves (`bpmndi`), so it opens in the designer.

The corpus files are written by hand as a designer's modeler would save their semantics;
drawing coordinates by hand for fifty files is error-prone, so this lays them out: each
process (or pool) left to right by longest path, boundary events on their host's lower
edge, sub-processes collapsed with a plane of their own (as Camunda Modeler 5 saves a
collapsed sub-process: bpmn-js drills down into it), pools stacked, lanes as bands. Flow
nodes also get the `incoming`/`outgoing` references a modeler writes (bpmn-js and bpmnlint
read a node's flows from them, not from the flows' sourceRef/targetRef).

    python -m tests.bpmn_corpus.layout FILE...      # adds a diagram to each file that has none

A file that already has a diagram is left alone (so hand-drawn ones stay as drawn). Not
used by the tests: the tests read the files as they are.
"""
from __future__ import annotations

import sys
from pathlib import Path

from lxml import etree

__all__ = ["add_diagram"]

BPMN = "http://www.omg.org/spec/BPMN/20100524/MODEL"
BPMNDI = "http://www.omg.org/spec/BPMN/20100524/DI"
DC = "http://www.omg.org/spec/DD/20100524/DC"
DI = "http://www.omg.org/spec/DD/20100524/DI"

_SIZES = {"event": (36, 36), "gateway": (50, 50), "activity": (100, 80), "dataObjectReference": (36, 50),
          "dataStoreReference": (50, 50), "textAnnotation": (100, 30)}
_ACTIVITIES = {"task", "userTask", "serviceTask", "sendTask", "receiveTask", "scriptTask", "manualTask",
               "businessRuleTask", "callActivity", "subProcess", "transaction", "adHocSubProcess"}
_CONTAINERS = {"subProcess", "transaction", "adHocSubProcess"}
_STEP_X, _STEP_Y = 160, 120


def _local(el) -> str:
    return etree.QName(el).localname if isinstance(el.tag, str) else ""


def _kind(el) -> str | None:
    name = _local(el)
    if name.endswith("Event") and name != "boundaryEvent":
        return "event"
    if name.endswith("Gateway"):
        return "gateway"
    if name in _ACTIVITIES:
        return "activity"
    if name in ("dataObjectReference", "dataStoreReference", "textAnnotation"):
        return name
    return None


class _Layout:
    def __init__(self, root):
        self.root = root
        self.bounds: dict[str, tuple[float, float, float, float]] = {}     # id -> x, y, w, h
        self.planes: list[tuple[str, list]] = []                           # (bpmnElement, DI elements)
        self.pools: set[str] = set()
        self.boundary_ids: set[str] = set()

    # ---- one container (a process or a sub-process): nodes by longest path -------------
    def place(self, container, x0: float, y0: float, lanes: list | None = None) -> tuple[float, float]:
        """Place the flow nodes of `container` from (x0, y0); returns (width, height) used.
        `lanes`: [(lane id, set of node ids)] to put each node in its lane's band."""
        nodes = [el for el in container if _kind(el) is not None]
        ids = [n.get("id") for n in nodes]
        boundaries = [el for el in container if _local(el) == "boundaryEvent"]
        flows = [(f.get("sourceRef"), f.get("targetRef")) for f in container if _local(f) == "sequenceFlow"]
        host_of = {b.get("id"): b.get("attachedToRef") for b in boundaries}
        succ: dict[str, list[str]] = {}
        for s, t in flows:
            succ.setdefault(host_of.get(s, s), []).append(t)
        # back edges (loops) found by a depth-first walk from the nodes nothing flows into
        targets = {t for _, t in flows}
        order = [i for i in ids if i not in targets and _local(container.find(f"*[@id='{i}']")) not in
                 ("textAnnotation", "dataObjectReference", "dataStoreReference")] + ids
        layer = {i: 0 for i in ids}
        state: dict[str, int] = {}
        back = set()

        def walk(n: str) -> None:
            stack = [(n, iter(succ.get(n, [])))]
            state[n] = 1
            while stack:
                cur, it = stack[-1]
                nxt = next(it, None)
                if nxt is None:
                    state[cur] = 2
                    stack.pop()
                elif nxt not in layer:
                    continue
                elif state.get(nxt) == 1:
                    back.add((cur, nxt))
                elif state.get(nxt) is None:
                    state[nxt] = 1
                    stack.append((nxt, iter(succ.get(nxt, []))))

        for n in order:
            if n not in state:
                walk(n)
        for _ in range(len(ids) + 1):     # longest path over the forward edges
            changed = False
            for s, ts in succ.items():
                for t in ts:
                    if s in layer and t in layer and (s, t) not in back and layer[t] < layer[s] + 1:
                        layer[t] = layer[s] + 1
                        changed = True
            if not changed:
                break
        # data and annotations go beside the node they belong to
        for el in container.iter(f"{{{BPMN}}}dataInputAssociation", f"{{{BPMN}}}dataOutputAssociation"):
            task = el.getparent().get("id")
            ref = (el.findtext(f"{{{BPMN}}}sourceRef") or el.findtext(f"{{{BPMN}}}targetRef") or "").strip()
            if ref in layer and task in layer:
                layer[ref] = layer[task]
        for a in container:
            if _local(a) == "association" and a.get("targetRef") in layer and a.get("sourceRef") in layer:
                layer[a.get("targetRef")] = layer[a.get("sourceRef")]
        lane_of = {}
        for index, (_, members) in enumerate(lanes or []):
            for m in members:
                lane_of[m] = index
        # rows: breadth first from the starts, a node on its discoverer's row (one lower for the
        # path out of a boundary event) or the next free row below it in its layer
        normal: dict[str, list[str]] = {}
        via_boundary: dict[str, list[str]] = {}
        for s, t in flows:
            (via_boundary if s in host_of else normal).setdefault(host_of.get(s, s), []).append(t)
        taken: dict[tuple[int, int], set[int]] = {}
        row_of: dict[str, int] = {}

        def put(i: str, wanted: int) -> None:
            used = taken.setdefault((lane_of.get(i, 0), layer[i]), set())
            row = wanted
            while row in used:
                row += 1
            used.add(row)
            row_of[i] = row

        for first in order:
            if first in row_of:
                continue
            put(first, 0)
            queue = [first]
            while queue:
                cur = queue.pop(0)
                for nxt, extra in [(t, 0) for t in normal.get(cur, [])] + [(t, 1) for t in via_boundary.get(cur, [])]:
                    if nxt in layer and nxt not in row_of:
                        same_lane = lane_of.get(nxt, 0) == lane_of.get(cur, 0)
                        put(nxt, (row_of[cur] if same_lane else 0) + extra)
                        queue.append(nxt)
        rows = {key: max(used) + 1 for key, used in taken.items()}
        lane_rows = [max([r for (ln, _), r in rows.items() if ln == index] or [1])
                     for index in range(max(1, len(lanes or [])))]
        lane_top = [sum(lane_rows[:k]) * _STEP_Y for k in range(len(lane_rows))]
        for el in nodes:
            i = el.get("id")
            w, h = _SIZES[_kind(el)]
            cx = x0 + 60 + layer[i] * _STEP_X
            cy = y0 + 60 + lane_top[lane_of.get(i, 0)] + row_of[i] * _STEP_Y
            self.bounds[i] = (cx - w / 2, cy - h / 2, w, h)
        per_host: dict[str, int] = {}
        for b in boundaries:
            hx, hy, hw, hh = self.bounds[b.get("attachedToRef")]
            k = per_host.get(b.get("attachedToRef"), 0)
            per_host[b.get("attachedToRef")] = k + 1
            self.bounds[b.get("id")] = (hx + hw - 38 - 40 * k, hy + hh - 18, 36, 36)
        width = 60 + (max(layer.values(), default=0) + 1) * _STEP_X
        return width, sum(lane_rows) * _STEP_Y

    # ---- drawing ---------------------------------------------------------------------------
    def shape(self, el, expanded: bool | None = None, horizontal: bool = False):
        i = el.get("id")
        x, y, w, h = self.bounds[i]
        s = etree.Element(f"{{{BPMNDI}}}BPMNShape", id=f"{i}_di", bpmnElement=i)
        if horizontal:
            s.set("isHorizontal", "true")
        if expanded is not None:
            s.set("isExpanded", "true" if expanded else "false")
        etree.SubElement(s, f"{{{DC}}}Bounds", x=_n(x), y=_n(y), width=_n(w), height=_n(h))
        return s

    def edge(self, el, points):
        e = etree.Element(f"{{{BPMNDI}}}BPMNEdge", id=f"{el.get('id')}_di", bpmnElement=el.get("id"))
        for px, py in points:
            etree.SubElement(e, f"{{{DI}}}waypoint", x=_n(px), y=_n(py))
        return e

    def flow_points(self, source: str, target: str) -> list:
        sx, sy, sw, sh = self.bounds[source]
        tx, ty, tw, th = self.bounds[target]
        if sx + sw <= tx:                      # forward
            if source in self.boundary_ids:
                start = (sx + sw / 2, sy + sh)
                return [start, (start[0], ty + th / 2), (tx, ty + th / 2)]
            a, b = (sx + sw, sy + sh / 2), (tx, ty + th / 2)
            if a[1] == b[1]:
                return [a, b]
            mid = (a[0] + b[0]) / 2
            return [a, (mid, a[1]), (mid, b[1]), b]
        low = max(sy + sh, ty + th) + 30        # a loop back: under both
        return [(sx + sw / 2, sy + sh), (sx + sw / 2, low), (tx + tw / 2, low), (tx + tw / 2, ty + th)]

    def draw_container(self, container, out: list, subplanes: list) -> None:
        for el in container:
            name = _local(el)
            if _kind(el) is not None:
                if name in _CONTAINERS:
                    out.append(self.shape(el, expanded=False))
                    subplanes.append(el)
                else:
                    out.append(self.shape(el))
            elif name == "boundaryEvent":
                out.append(self.shape(el))
        for el in container:          # a group: drawn around the container's nodes
            if _local(el) == "group":
                boxes = [self.bounds[n.get("id")] for n in container if _kind(n) is not None]
                left, top = min(b[0] for b in boxes) - 20, min(b[1] for b in boxes) - 20
                right, bottom = max(b[0] + b[2] for b in boxes) + 20, max(b[1] + b[3] for b in boxes) + 30
                self.bounds[el.get("id")] = (left, top, right - left, bottom - top)
                out.append(self.shape(el))
        for el in container:
            name = _local(el)
            if name == "sequenceFlow":
                out.append(self.edge(el, self.flow_points(el.get("sourceRef"), el.get("targetRef"))))
            elif name == "association" and el.get("sourceRef") in self.bounds and el.get("targetRef") in self.bounds:
                out.append(self.edge(el, self.straight(el.get("sourceRef"), el.get("targetRef"))))
        for assoc in container.iter(f"{{{BPMN}}}dataInputAssociation", f"{{{BPMN}}}dataOutputAssociation"):
            task = assoc.getparent().get("id")
            src = (assoc.findtext(f"{{{BPMN}}}sourceRef") or "").strip()
            dst = (assoc.findtext(f"{{{BPMN}}}targetRef") or "").strip()
            a, b = (src, task) if _local(assoc) == "dataInputAssociation" else (task, dst)
            if assoc.get("id") and a in self.bounds and b in self.bounds and assoc.getparent().getparent() is container:
                out.append(self.edge(assoc, self.straight(a, b)))

    def straight(self, a: str, b: str) -> list:
        ax, ay, aw, ah = self.bounds[a]
        bx, by, bw, bh = self.bounds[b]
        acx, acy, bcx, bcy = ax + aw / 2, ay + ah / 2, bx + bw / 2, by + bh / 2
        if abs(acy - bcy) >= abs(acx - bcx):
            return [(acx, ay + ah if bcy > acy else ay), (bcx, by if bcy > acy else by + bh)]
        return [(ax + aw if bcx > acx else ax, acy), (bx if bcx > acx else bx + bw, bcy)]

    def plane_for_subprocess(self, sub, planes: list) -> None:
        self.place(sub, 100, 60)
        elements: list = []
        nested: list = []
        self.draw_container(sub, elements, nested)
        planes.append((sub.get("id"), elements))
        for n in nested:
            self.plane_for_subprocess(n, planes)


def _n(v: float) -> str:
    return str(int(round(v)))


def _add_flow_refs(root) -> None:
    """<bpmn:incoming>/<bpmn:outgoing> in each flow node, where the XSD puts them (after
    documentation and extensionElements, before everything else)."""
    nodes = {el.get("id"): el for el in root.iter() if isinstance(el.tag, str) and el.get("id")}
    refs: dict[str, list[tuple[str, str]]] = {}
    for flow in root.iter(f"{{{BPMN}}}sequenceFlow"):
        refs.setdefault(flow.get("sourceRef"), []).append(("outgoing", flow.get("id")))
        refs.setdefault(flow.get("targetRef"), []).append(("incoming", flow.get("id")))
    for node_id, items in refs.items():
        node = nodes.get(node_id)
        if node is None or node.find(f"{{{BPMN}}}incoming") is not None or node.find(f"{{{BPMN}}}outgoing") is not None:
            continue
        at = 0
        while at < len(node) and _local(node[at]) in ("documentation", "extensionElements"):
            at += 1
        for kind in ("incoming", "outgoing"):
            for k, flow_id in items:
                if k == kind:
                    ref = etree.Element(f"{{{BPMN}}}{kind}")
                    ref.text = flow_id
                    node.insert(at, ref)
                    at += 1


def add_diagram(xml: bytes) -> bytes:
    """`xml` with a bpmndi diagram added (unchanged when it has one already)."""
    root = etree.fromstring(xml)
    if root.find(f"{{{BPMNDI}}}BPMNDiagram") is not None:
        return xml
    _add_flow_refs(root)
    lay = _Layout(root)
    lay.boundary_ids = {b.get("id") for b in root.iter(f"{{{BPMN}}}boundaryEvent")}
    processes = {p.get("id"): p for p in root.findall(f"{{{BPMN}}}process")}
    collab = root.find(f"{{{BPMN}}}collaboration")
    main_elements: list = []
    subplanes: list = []
    if collab is not None:
        top = 80
        pools = collab.findall(f"{{{BPMN}}}participant")
        sizes = []
        for pool in pools:
            proc = processes.get(pool.get("processRef"))
            if proc is None:
                sizes.append((pool, None, 600, 60))
                continue
            lanes = [(lane.get("id"), {r.text.strip() for r in lane.findall(f"{{{BPMN}}}flowNodeRef")})
                     for lane in proc.iter(f"{{{BPMN}}}lane")]
            w, h = lay.place(proc, 160 + (30 if lanes else 0), top, lanes or None)
            sizes.append((pool, proc, w, h))
            top += h + 60
        width = max(600, *(w + 60 for _, _, w, _ in sizes))
        top = 80
        lay.pools = {pool.get("id") for pool in pools}
        for pool, proc, _, h in sizes:
            h = h if proc is not None else 60
            lay.bounds[pool.get("id")] = (130, top, width, h)
            main_elements.append(lay.shape(pool, horizontal=True))
            if proc is not None:
                lanes = list(proc.iter(f"{{{BPMN}}}lane"))
                if lanes:
                    # the same bands the nodes were placed in
                    band = top
                    for lane in lanes:
                        refs = {r.text.strip() for r in lane.findall(f"{{{BPMN}}}flowNodeRef")}
                        rows = _lane_rows(lay, refs, band)
                        lay.bounds[lane.get("id")] = (160, band, width - 30, rows)
                        main_elements.append(lay.shape(lane, horizontal=True))
                        band += rows
            top += h + 60
        for _, proc, _, _ in sizes:
            if proc is not None:
                lay.draw_container(proc, main_elements, subplanes)
        for mf in collab.findall(f"{{{BPMN}}}messageFlow"):
            main_elements.append(lay.edge(mf, _message_points(lay, mf.get("sourceRef"), mf.get("targetRef"))))
        plane_of = collab.get("id")
    else:
        executable = [p for p in processes.values() if p.get("isExecutable") != "false"] or list(processes.values())
        if not executable:
            return xml
        first = executable[0]
        lay.place(first, 120, 40)
        lay.draw_container(first, main_elements, subplanes)
        plane_of = first.get("id")
    planes = [(plane_of, main_elements)]
    for sub in subplanes:
        lay.plane_for_subprocess(sub, planes)
    for index, (element, shapes) in enumerate(planes, start=1):
        diagram = etree.SubElement(root, f"{{{BPMNDI}}}BPMNDiagram", id=f"BPMNDiagram_{index}")
        plane = etree.SubElement(diagram, f"{{{BPMNDI}}}BPMNPlane", id=f"BPMNPlane_{index}", bpmnElement=element)
        plane.extend(shapes)
    etree.indent(root, space="  ")
    return b'<?xml version="1.0" encoding="UTF-8"?>\n' + etree.tostring(root, encoding="UTF-8") + b"\n"


def _lane_rows(lay: _Layout, refs: set, band_top: float) -> float:
    """Height of a lane band: down to the lowest node placed in it (nodes were placed in bands
    of whole rows from the pool's top)."""
    lowest = max((lay.bounds[r][1] + lay.bounds[r][3] for r in refs if r in lay.bounds), default=band_top + 60)
    rows = max(1, int((lowest - band_top + 60) // _STEP_Y))
    return rows * _STEP_Y


def _message_points(lay: _Layout, source: str, target: str) -> list:
    sx, sy, sw, sh = lay.bounds[source]
    tx, ty, tw, th = lay.bounds[target]
    scx, tcx = sx + sw / 2, tx + tw / 2
    if source in lay.pools:        # a (collapsed) pool: the flow leaves it straight below/above the node
        scx = tcx
    elif target in lay.pools:
        tcx = scx
    if ty > sy:
        return [(scx, sy + sh), (scx, (sy + sh + ty) / 2), (tcx, (sy + sh + ty) / 2), (tcx, ty)]
    return [(scx, sy), (scx, (sy + ty + th) / 2), (tcx, (sy + ty + th) / 2), (tcx, ty + th)]


def main(paths: list[str]) -> None:
    for p in paths:
        path = Path(p)
        raw = path.read_bytes()
        out = add_diagram(raw)
        if out != raw:
            path.write_bytes(out)
            print(f"laid out {path}")


if __name__ == "__main__":
    main(sys.argv[1:])
