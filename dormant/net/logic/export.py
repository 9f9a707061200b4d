"""Writing a netlist out: AIGER ASCII (and reading it back to evaluate), JSON and Graphviz DOT."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from dormant.net.logic.aig import AIG, to_aig
from dormant.net.logic.netlist import Netlist, live_cone

if TYPE_CHECKING:
    from dormant.net.logic.decompile import DecompileResult


def write_aiger(aig: AIG, path: str | Path) -> Path:
    """Write the AIG in AIGER ASCII format (``aag``) with a symbol table."""
    p = Path(path)
    m = aig.n_inputs + len(aig.ands)
    lines = [f"aag {m} {aig.n_inputs} 0 {len(aig.outputs)} {len(aig.ands)}"]
    lines += [str(2 * (j + 1)) for j in range(aig.n_inputs)]
    lines += [str(o) for o in aig.outputs]
    for j, (a, b) in enumerate(aig.ands):
        lines.append(f"{2 * (aig.n_inputs + 1 + j)} {max(a, b)} {min(a, b)}")
    lines += [f"i{j} {n}" for j, n in enumerate(aig.input_names)]
    lines += [f"o{j} {n}" for j, n in enumerate(aig.output_names)]
    lines.append("c\nwritten by dormant net decompile")
    p.write_text("\n".join(lines) + "\n")
    return p


def read_aiger_eval(path: str | Path, inputs: np.ndarray) -> np.ndarray:
    """Evaluate an ``aag`` file on a batch of input bits (batch, I) -> outputs (batch, O)."""
    lines = Path(path).read_text().splitlines()
    _, m, i, _, o, a = lines[0].split()
    m, i, o, a = int(m), int(i), int(o), int(a)
    val = np.zeros((inputs.shape[0], 2 * (m + 1)), np.int64)
    val[:, 1] = 1
    for j in range(i):
        v = int(lines[1 + j])
        val[:, v], val[:, v + 1] = inputs[:, j], 1 - inputs[:, j]
    outs = [int(x) for x in lines[1 + i : 1 + i + o]]
    for line in lines[1 + i + o : 1 + i + o + a]:
        lhs, r0, r1 = (int(x) for x in line.split())
        val[:, lhs] = val[:, r0] & val[:, r1]
        val[:, lhs + 1] = 1 - val[:, lhs]
    return val[:, outs]


_TABLE_NAMES = {(2, "1000"): "AND", (2, "0001"): "NOR", (2, "0110"): "XOR", (2, "1001"): "XNOR", (2, "1110"): "OR", (2, "0111"): "NAND", (1, "01"): "NOT", (2, "0100"): "AND-NOT", (2, "0010"): "AND-NOT"}


def table_name(table: np.ndarray) -> str:
    k = int(np.log2(table.size))
    bits = "".join(str(int(b)) for b in table[::-1])
    return _TABLE_NAMES.get((k, bits), f"f{k}:{int(bits, 2):x}")


def netlist_json(nl: Netlist, live: set[int] | None = None) -> dict:
    live = live_cone(nl) if live is None else live
    sigs = sorted(s for s in live if s >= 2)
    return {
        "inputs": [{"id": s, "name": nl.name(s), "kind": nl.kind[s]} for s in sigs if nl.kind[s] != "gate"],
        "gates": [{"id": s, "op": table_name(nl.table[s]), "fanins": list(nl.fanins[s]), "table": "".join(str(int(b)) for b in nl.table[s]), "origin": nl.name(s)} for s in sigs if nl.kind[s] == "gate"],
        "outputs": [{"name": n, "id": s} for n, s in nl.outputs],
    }


def write_dot(nl: Netlist, path: str | Path, live: set[int] | None = None, max_nodes: int = 3000) -> Path | None:
    """Graphviz DOT of the live netlist (None when it has more than ``max_nodes`` signals)."""
    live = live_cone(nl) if live is None else live
    if len(live) > max_nodes:
        return None
    lines = ["digraph netlist {", "  rankdir=LR; node [fontsize=10];"]
    for s in sorted(live):
        if s < 2:
            lines.append(f'  s{s} [label="{s}", shape=plaintext];')
        elif nl.kind[s] == "gate":
            lines.append(f'  s{s} [label="{table_name(nl.table[s])}\\n{nl.name(s)}", shape=box];')
            lines += [f"  s{f} -> s{s};" for f in nl.fanins[s]]
        else:
            lines.append(f'  s{s} [label="{nl.name(s)}", shape=ellipse];')
    for j, (name, s) in enumerate(nl.outputs):
        lines.append(f'  o{j} [label="{name}", shape=doubleoctagon];  s{s} -> o{j};')
    lines.append("}")
    p = Path(path)
    p.write_text("\n".join(lines) + "\n")
    return p


def export_all(res: DecompileResult, folder: str | Path) -> dict[str, str]:
    """Write the netlist as AIGER ASCII, JSON and (when small) DOT; return name -> path."""
    out = Path(folder)
    out.mkdir(parents=True, exist_ok=True)
    if res.netlist is None:
        return {}
    live = live_cone(res.netlist)
    paths = {"aiger": str(write_aiger(res.aig or to_aig(res.netlist, live), out / "netlist.aag"))}
    (out / "netlist.json").write_text(json.dumps(netlist_json(res.netlist, live)))
    paths["json"] = str(out / "netlist.json")
    dot = write_dot(res.netlist, out / "netlist.dot", live)
    if dot is not None:
        paths["dot"] = str(dot)
    return paths
